import { StopController } from './core/engine/stop.js';
import { errorMessage } from './core/errors.js';
import { EXIT, exitCodeOfError } from './core/exit-codes.js';
import type { CliIo } from './program.js';
import { commanderArgs, plainHelp } from './usage.js';

/**
 * Entry point of zbox-workers: prints the page for a plain help request from src/usage.ts, hands
 * any other command line to the commander program (src/program.ts), wires signals and maps every
 * error kind to its exit code. It is the only module that touches process.argv, process.exit and
 * signals. Commander and the command modules load only when a command runs, so `--help` loads
 * neither.
 */

export type { CliIo } from './program.js';

/** Width of help off a terminal, as commander sets it; on a terminal help fills its columns. */
const HELP_WIDTH_OFF_TERMINAL = 80;

export async function main(argv: string[]): Promise<number> {
  const helpWidth =
    process.stdout.isTTY === true
      ? process.stdout.columns || HELP_WIDTH_OFF_TERMINAL
      : HELP_WIDTH_OFF_TERMINAL;
  const args = argv.slice(2);
  const help = plainHelp(args, helpWidth);
  if (help !== undefined) {
    process.stdout.write(help);
    return EXIT.ok;
  }

  const stop = new StopController();
  const io: CliIo = {
    env: process.env,
    stop,
    isTty: process.stdout.isTTY === true,
    helpWidth,
    writeOut: (text) => process.stdout.write(text),
    writeErr: (text) => process.stderr.write(text),
  };
  installSignalHandlers(stop);
  try {
    const { runProgram } = await import('./program.js');
    return await runProgram([...argv.slice(0, 2), ...commanderArgs(args)], io);
  } catch (error) {
    const code = exitCodeOfError(error);
    const label = code === EXIT.internal ? 'internal error (please report it)' : 'error';
    io.writeErr(`zbox-workers: ${label}: ${errorMessage(error)}\n`);
    if (code === EXIT.internal && error instanceof Error && error.stack !== undefined) {
      io.writeErr(`${error.stack}\n`);
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
