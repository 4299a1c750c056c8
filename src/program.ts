import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { WORKER_CATALOG } from './commands/catalog.js';
import type { RuntimeIo, WorkerOptions, WorkerSpec } from './core/engine/runtime.js';
import { EXIT } from './core/exit-codes.js';
import {
  type CommandSpec,
  EXIT_CODES_HELP,
  HELP_OPTION,
  OPERATIONS_COMMANDS,
  type OptionSpec,
  PROGRAM_DESCRIPTION,
  PROGRAM_NAME,
  VERSION_OPTION,
  WORKER_COMMANDS,
} from './usage.js';

/**
 * The commander program: registers the commands and options that src/usage.ts describes, parses
 * the flags and runs the chosen command. Command modules are imported when their command runs.
 * src/cli.ts loads this module for every command line that is not a plain help request.
 */

const VERSION = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

export interface CliIo extends RuntimeIo {
  writeErr: (text: string) => void;
  /** Width in columns that help on standard output is wrapped to. */
  helpWidth: number;
}

/** The module that does a worker's work, given the worker's parsed options. */
const WORKER_MODULES: Record<string, (options: Record<string, unknown>) => Promise<WorkerSpec>> = {
  'create-allocation': async () => (await import('./commands/create-allocation.js')).createAllocation(),
  'funding-zbox': async () => (await import('./commands/funding-zbox.js')).fundingZbox(),
  'authorized-blobbers': async () => (await import('./commands/authorized-blobbers.js')).authorizedBlobbers(),
  'expiring-allocations': async () =>
    (await import('./commands/expiring-allocations.js')).expiringAllocations(),
  'delete-wallet-transactions': async (options) =>
    (await import('./commands/delete-wallet-transactions.js')).deleteWalletTransactions({
      retentionDays: options.retentionDays as number | undefined,
      batchSize: options.batchSize as number | undefined,
    }),
  'openai-batch-request': async () =>
    (await import('./commands/openai-batch-request.js')).openAIBatchRequest(),
  'delete-openai-files': async () => (await import('./commands/delete-openai-files.js')).deleteOpenAIFiles(),
  'free-storage': async () => (await import('./commands/free-storage.js')).freeStorage(),
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

function addOption(command: Command, option: OptionSpec): void {
  switch (option.value) {
    case 'positive-integer':
      command.option(option.flags, option.description, positiveInteger);
      return;
    case 'task-id':
      command.option(option.flags, option.description, taskId);
      return;
    case undefined:
      command.option(option.flags, option.description);
  }
}

/** Registers a command with its summary, description and options; the caller adds the action. */
function addCommand(program: Command, spec: CommandSpec): Command {
  const command = program
    .command(spec.argument === undefined ? spec.name : `${spec.name} ${spec.argument}`)
    .summary(spec.summary)
    .description(spec.description);
  for (const option of spec.options) {
    addOption(command, option);
  }
  return command;
}

/** Builds the program. `setExitCode` receives the code of a finished command. */
export function buildProgram(io: CliIo, setExitCode: (code: number) => void): Command {
  const program = new Command(PROGRAM_NAME)
    .description(PROGRAM_DESCRIPTION)
    .version(VERSION, VERSION_OPTION.flags, VERSION_OPTION.description)
    .helpOption(HELP_OPTION.flags, HELP_OPTION.description)
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', EXIT_CODES_HELP)
    .configureOutput({
      writeOut: io.writeOut,
      writeErr: io.writeErr,
      getOutHelpWidth: () => io.helpWidth,
    })
    .exitOverride();

  for (const spec of WORKER_COMMANDS) {
    const load = WORKER_MODULES[spec.name];
    if (load === undefined) {
      throw new Error(`worker ${spec.name} is in the catalog but has no module in src/program.ts`);
    }
    addCommand(program, spec)
      .addHelpText('after', EXIT_CODES_HELP)
      .action(async (options: Record<string, unknown>) => {
        const workerSpec = { ...(await load(options)), requires: requirementsOf(spec.name) };
        // The runtime (slonik, zod, the database code) loads only when a worker runs, not for --help.
        const { runWorker } = await import('./core/engine/runtime.js');
        const summary = await runWorker(workerSpec, workerOptions(options), io);
        setExitCode(summary.exit_code);
      });
  }

  const operations = new Map(OPERATIONS_COMMANDS.map((spec) => [spec.name, spec]));
  const operation = (name: string) => addCommand(program, operations.get(name) as CommandSpec);
  const json = (options: { json?: boolean }) => options.json === true || !io.isTty;

  operation('migrate').action(async (options: { embedded?: boolean; json?: boolean }) => {
    const { runMigrate } = await import('./commands/migrate.js');
    setExitCode(await runMigrate({ embedded: options.embedded === true, json: json(options) }, io));
  });

  operation('status').action(async (options: { json?: boolean; embedded?: boolean }) => {
    const { runStatus } = await import('./commands/status.js');
    setExitCode(await runStatus({ json: json(options), embedded: options.embedded === true }, io));
  });

  operation('requeue').action(async (worker: string, options: Record<string, unknown>) => {
    const { runRequeue } = await import('./commands/requeue.js');
    setExitCode(
      await runRequeue(
        {
          worker,
          ids: options.id as bigint[] | undefined,
          allDead: options.allDead === true,
          dryRun: options.dryRun === true,
          json: json(options),
          embedded: options.embedded === true,
        },
        io,
      ),
    );
  });

  operation('doctor').action(async (options: { json?: boolean; embedded?: boolean }) => {
    const { runDoctor } = await import('./commands/doctor.js');
    setExitCode(await runDoctor({ json: json(options), embedded: options.embedded === true }, io));
  });

  operation('demo').action(async (options: { json?: boolean }) => {
    const { runDemo } = await import('./commands/demo.js');
    setExitCode(await runDemo({ json: json(options) }, io));
  });

  operation('wallet').action(async (options: { json?: boolean }) => {
    const { runWallet } = await import('./commands/wallet.js');
    setExitCode(await runWallet({ json: json(options) }, io));
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

/**
 * Parses `argv` (with the node and script paths first) and runs the command. Returns the command's
 * exit code. Commander's own errors (bad flag, missing argument) are printed by commander and
 * return 2; help and version return 0. Any other error propagates.
 */
export async function runProgram(argv: string[], io: CliIo): Promise<number> {
  let exitCode: number = EXIT.ok;
  const program = buildProgram(io, (code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync(argv);
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode === 0 ? EXIT.ok : EXIT.config;
    }
    throw error;
  }
}

/** Variables a worker cannot run without, from the worker catalog. */
function requirementsOf(worker: string) {
  return WORKER_CATALOG.find((entry) => entry.name === worker)?.requires ?? [];
}
