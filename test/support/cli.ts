import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BIN = fileURLToPath(new URL('../../bin/zbox-workers', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Standard output parsed as JSON lines (lines that are not JSON are left out). */
  lines: Array<Record<string, unknown>>;
}

/**
 * Runs the compiled CLI (bin/zbox-workers, so `npm run build` must have run) with only the given
 * environment plus PATH and HOME, as a CronJob would.
 */
export function runCli(args: string[], env: Record<string, string>, options: { timeoutMs?: number } = {}) {
  return spawnCli(args, env, options).result;
}

export function spawnCli(args: string[], env: Record<string, string>, options: { timeoutMs?: number } = {}) {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
  const result = new Promise<CliResult>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, lines: parseJsonLines(stdout) });
    });
  });
  return { child, result, output: () => stdout };
}

export function parseJsonLines(text: string): Array<Record<string, unknown>> {
  return text
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
}

/** Returns the run summary, which is the last JSON line. */
export function summaryOf(result: CliResult): Record<string, unknown> {
  const last = result.lines.at(-1);
  if (last?.msg !== 'run summary') {
    throw new Error(`no run summary as the last line; stdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
  }
  return last;
}
