import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { WORKER_CATALOG } from './commands/catalog.js';
import type { RuntimeIo, WorkerOptions, WorkerSpec } from './core/engine/runtime.js';
import { StopController } from './core/engine/stop.js';
import { ConfigError, errorMessage, StartupError } from './core/errors.js';
import { EXIT } from './core/exit-codes.js';

/**
 * The zbox-workers program: registers the commands, parses flags, wires signals and maps every
 * error kind to its exit code. It is the only module that touches process.argv, process.exit and
 * signals. Command modules are imported when their command runs, so `--help` loads none of them.
 */

const VERSION = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

const EXIT_CODES_HELP = `
Exit codes:
  0        cycle completed; nothing needs a person
  2        usage or configuration error (bad flag, missing or invalid environment)
  3        could not start (database unreachable, schema behind: run migrate, or schema newer: deploy the newer image)
  4        cycle completed but work needs attention (dead task, guard rail, dependency unavailable)
  70       internal error (a bug)
  130/143  interrupted by SIGINT/SIGTERM after draining`;

/** Command-line part of a catalog worker: its own options and the module that does the work. */
interface WorkerCommand {
  addOptions?: (command: Command) => void;
  load: (options: Record<string, unknown>) => Promise<WorkerSpec>;
}

const WORKER_COMMANDS: Record<string, WorkerCommand> = {
  'create-allocation': {
    load: async () => (await import('./commands/create-allocation.js')).createAllocation(),
  },
  'funding-zbox': {
    load: async () => (await import('./commands/funding-zbox.js')).fundingZbox(),
  },
  'authorized-blobbers': {
    load: async () => (await import('./commands/authorized-blobbers.js')).authorizedBlobbers(),
  },
  'expiring-allocations': {
    load: async () => (await import('./commands/expiring-allocations.js')).expiringAllocations(),
  },
  'delete-wallet-transactions': {
    addOptions: (command) => {
      command
        .option(
          '--retention-days <days>',
          'delete rows older than this many days (env ZBOX_RETENTION_DAYS, default 90)',
          positiveInteger,
        )
        .option(
          '--batch-size <rows>',
          'rows deleted per transaction (env ZBOX_DELETE_BATCH_SIZE, default 5000)',
          positiveInteger,
        );
    },
    load: async (options) =>
      (await import('./commands/delete-wallet-transactions.js')).deleteWalletTransactions({
        retentionDays: options.retentionDays as number | undefined,
        batchSize: options.batchSize as number | undefined,
      }),
  },
  'openai-batch-request': {
    load: async () => (await import('./commands/openai-batch-request.js')).openAIBatchRequest(),
  },
  'delete-openai-files': {
    load: async () => (await import('./commands/delete-openai-files.js')).deleteOpenAIFiles(),
  },
  'free-storage': {
    load: async () => (await import('./commands/free-storage.js')).freeStorage(),
  },
};

function positiveInteger(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
    throw new InvalidArgumentError(`expected a whole number of at least 1, got ${JSON.stringify(text)}`);
  }
  return Number(text);
}

function taskId(text: string, previous: bigint[] = []): bigint[] {
  if (!/^\d{1,19}$/.test(text)) {
    throw new InvalidArgumentError(`expected a numeric task id, got ${JSON.stringify(text)}`);
  }
  return [...previous, BigInt(text)];
}

function addWorkerOptions(command: Command): Command {
  return command
    .option('--dry-run', 'print what each task would do; change nothing anywhere')
    .option(
      '--limit <tasks>',
      'maximum tasks to claim in this run (env ZBOX_LIMIT, default 1000)',
      positiveInteger,
    )
    .option('--id <id>', 'only this task id, due or not, unless another run holds it (repeatable)', taskId)
    .option(
      '--concurrency <tasks>',
      'tasks executed at once (env ZBOX_CONCURRENCY, default 8)',
      positiveInteger,
    )
    .option('--json', 'one JSON object per line (the default off a terminal)')
    .option('--verbose', 'log at debug level')
    .option('--quiet', 'log warnings and errors only')
    .option('--embedded', 'use the embedded PostgreSQL in ZBOX_DATA_DIR instead of DATABASE_URL');
}

export interface CliIo extends RuntimeIo {
  writeErr: (text: string) => void;
}

/** Builds the program. `setExitCode` receives the code of a finished command. */
export function buildProgram(io: CliIo, setExitCode: (code: number) => void): Command {
  const program = new Command('zbox-workers')
    .description(
      'Background workers of 0Box on the Züs network. Each run does one cycle of one worker and exits.',
    )
    .version(VERSION, '--version', 'print the version')
    .helpOption('-h, --help', 'print help')
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', EXIT_CODES_HELP)
    .configureOutput({ writeOut: io.writeOut, writeErr: io.writeErr })
    .exitOverride();

  for (const entry of WORKER_CATALOG) {
    const worker = WORKER_COMMANDS[entry.name] as WorkerCommand;
    const command = program
      .command(entry.name)
      .summary(`${entry.summary} [${entry.schedule}]`)
      .description(`${entry.summary}.\nSuggested schedule: ${entry.schedule}.`)
      .addHelpText('after', EXIT_CODES_HELP);
    addWorkerOptions(command);
    worker.addOptions?.(command);
    command.action(async (options: Record<string, unknown>) => {
      const spec = await worker.load(options);
      // The runtime (slonik, zod, the database code) loads only when a worker runs, not for --help.
      const { runWorker } = await import('./core/engine/runtime.js');
      const summary = await runWorker(spec, workerOptions(options), io);
      setExitCode(summary.exit_code);
    });
  }

  program
    .command('migrate')
    .summary('applies pending database migrations [before each deploy]')
    .description(
      'Applies the versioned SQL migrations under an advisory lock; safe to start several at once.',
    )
    .option('--embedded', 'migrate the embedded PostgreSQL in ZBOX_DATA_DIR')
    .option('--json', 'one JSON object per line (the default off a terminal)')
    .action(async (options: { embedded?: boolean; json?: boolean }) => {
      const { runMigrate } = await import('./commands/migrate.js');
      setExitCode(
        await runMigrate(
          { embedded: options.embedded === true, json: options.json === true || !io.isTty },
          io,
        ),
      );
    });
  program
    .command('status')
    .summary(
      "prints each worker's due, in-progress, retrying and dead tasks and its last run [in an incident]",
    )
    .description(
      "Prints, per worker, the queue's due, in-progress, retrying and dead counts, the age of the oldest due task, and the last real run's summary and exit code. Reads only.",
    )
    .option('--json', 'one JSON object (the default off a terminal)')
    .option('--embedded', 'read the embedded PostgreSQL in ZBOX_DATA_DIR instead of DATABASE_URL')
    .action(async (options: { json?: boolean; embedded?: boolean }) => {
      const { runStatus } = await import('./commands/status.js');
      setExitCode(
        await runStatus(
          { json: options.json === true || !io.isTty, embedded: options.embedded === true },
          io,
        ),
      );
    });

  program
    .command('requeue <worker>')
    .summary('moves dead tasks of a queue worker back to pending with attempts reset [in an incident]')
    .description('Moves dead tasks back to pending, due now, with attempts reset, and lists what it moved.')
    .option('--id <id>', 'this dead task (repeatable)', taskId)
    .option('--all-dead', 'every dead task of the worker')
    .option('--dry-run', 'list what would be moved; change nothing')
    .option('--json', 'one JSON object per line (the default off a terminal)')
    .option('--embedded', 'use the embedded PostgreSQL in ZBOX_DATA_DIR instead of DATABASE_URL')
    .action(async (worker: string, options: Record<string, unknown>) => {
      const { runRequeue } = await import('./commands/requeue.js');
      setExitCode(
        await runRequeue(
          {
            worker,
            ids: options.id as bigint[] | undefined,
            allDead: options.allDead === true,
            dryRun: options.dryRun === true,
            json: options.json === true || !io.isTty,
            embedded: options.embedded === true,
          },
          io,
        ),
      );
    });

  program
    .command('doctor')
    .summary(
      'checks the configuration and probes every dependency read-only [after a deploy, in an incident]',
    )
    .description(
      'Checks the configuration of every worker and probes each configured dependency read-only. Prints OK, FAIL or SKIP per check; exits 0 only when nothing failed, else 4.',
    )
    .option('--json', 'one JSON object (the default off a terminal)')
    .option('--embedded', 'check the embedded PostgreSQL in ZBOX_DATA_DIR instead of DATABASE_URL')
    .action(async (options: { json?: boolean; embedded?: boolean }) => {
      const { runDoctor } = await import('./commands/doctor.js');
      setExitCode(
        await runDoctor(
          { json: options.json === true || !io.isTty, embedded: options.embedded === true },
          io,
        ),
      );
    });

  program
    .command('demo')
    .summary('runs every worker against local simulators on the embedded database [on a laptop]')
    .description(
      'Starts loopback simulators of the Züs network, blobbers, Elasticsearch and FCM, seeds sample data in the embedded PostgreSQL (ZBOX_DATA_DIR), runs every worker in dry-run and then for real, and prints the final status. Nothing leaves the machine.',
    )
    .option('--json', 'one JSON object per line (the default off a terminal)')
    .action(async (options: { json?: boolean }) => {
      const { runDemo } = await import('./commands/demo.js');
      setExitCode(await runDemo({ json: options.json === true || !io.isTty }, io));
    });

  program
    .command('wallet')
    .summary("prints the team wallet's client id, public key, balance and next nonce [by hand]")
    .description(
      "Prints the team wallet's client id, public key, balance in ZCN and SAS, and the next nonce. Reads ZBOX_TEAM_WALLET; prints nothing secret.",
    )
    .option('--json', 'one JSON object (the default off a terminal)')
    .action(async (options: { json?: boolean }) => {
      const { runWallet } = await import('./commands/wallet.js');
      setExitCode(await runWallet({ json: options.json === true || !io.isTty }, io));
    });
  return program;
}

function workerOptions(options: Record<string, unknown>): WorkerOptions {
  return {
    dryRun: options.dryRun === true,
    limit: options.limit as number | undefined,
    ids: options.id as bigint[] | undefined,
    concurrency: options.concurrency as number | undefined,
    json: options.json === true,
    verbose: options.verbose === true,
    quiet: options.quiet === true,
    embedded: options.embedded === true,
  };
}

/** Exit code of an error that escaped a command. */
export function exitCodeOfError(error: unknown): number {
  if (error instanceof CommanderError) {
    return error.exitCode === 0 ? EXIT.ok : EXIT.config;
  }
  if (error instanceof ConfigError) {
    return EXIT.config;
  }
  if (error instanceof StartupError) {
    return EXIT.startup;
  }
  return EXIT.internal;
}

export async function main(argv: string[]): Promise<number> {
  const stop = new StopController();
  const io: CliIo = {
    env: process.env,
    stop,
    isTty: process.stdout.isTTY === true,
    writeOut: (text) => process.stdout.write(text),
    writeErr: (text) => process.stderr.write(text),
  };
  installSignalHandlers(stop);
  let exitCode: number = EXIT.ok;
  const program = buildProgram(io, (code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync(argv);
    return exitCode;
  } catch (error) {
    const code = exitCodeOfError(error);
    if (!(error instanceof CommanderError)) {
      const label = code === EXIT.internal ? 'internal error (please report it)' : 'error';
      io.writeErr(`zbox-workers: ${label}: ${errorMessage(error)}\n`);
      if (code === EXIT.internal && error instanceof Error && error.stack !== undefined) {
        io.writeErr(`${error.stack}\n`);
      }
    }
    return code;
  }
}

/** First SIGTERM/SIGINT drains the run; a second one exits at once. */
export function installSignalHandlers(stop: StopController): void {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (stop.stopping) {
        process.exit(signal === 'SIGTERM' ? EXIT.sigterm : EXIT.sigint);
      }
      process.stderr.write(`zbox-workers: ${signal} received: no new tasks start; in-flight tasks finish\n`);
      stop.stop(signal);
    });
  }
}

/** Entry point of bin/zbox-workers: runs the command line and exits with its code. */
export async function start(): Promise<never> {
  const code = await main(process.argv);
  process.exit(code);
}
