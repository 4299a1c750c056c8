import { spawn } from 'node:child_process';

/** Statistics and timing helpers shared by the benchmarks. */

export function median(values: number[]): number {
  if (values.length === 0) {
    throw new Error('median of no values');
  }
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** Nearest-rank percentile, `p` in (0, 100]. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] as number;
}

export function round(value: number, digits = 2): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

export interface PairedResult {
  /** Median of the measured side's figures. */
  subject: number;
  /** Median of the baseline's figures. */
  baseline: number;
  /** Median of the per-pair ratios subject / baseline. */
  ratio: number;
  ratios: number[];
}

/**
 * Measures `subject` and `baseline` pair by pair, alternating which one goes first, and takes the
 * ratio within each pair, so slow drift of the machine affects both sides of a ratio alike.
 */
export async function measurePairs(
  pairs: number,
  subject: () => Promise<number>,
  baseline: () => Promise<number>,
  onPair?: (index: number, subjectValue: number, baselineValue: number) => void,
): Promise<PairedResult> {
  const subjects: number[] = [];
  const baselines: number[] = [];
  const ratios: number[] = [];
  for (let index = 0; index < pairs; index += 1) {
    let subjectValue: number;
    let baselineValue: number;
    if (index % 2 === 0) {
      subjectValue = await subject();
      baselineValue = await baseline();
    } else {
      baselineValue = await baseline();
      subjectValue = await subject();
    }
    subjects.push(subjectValue);
    baselines.push(baselineValue);
    ratios.push(subjectValue / baselineValue);
    onPair?.(index, subjectValue, baselineValue);
  }
  return { subject: median(subjects), baseline: median(baselines), ratio: median(ratios), ratios };
}

export interface ProcessRun {
  wallMs: number;
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a process to its exit and returns its wall time, from spawn to exit, in milliseconds. The
 * child gets only `env` plus PATH and HOME, as a CronJob's container would.
 */
export function timeProcess(
  command: string,
  args: string[],
  options: { cwd: string; env?: Record<string, string>; keepOutput?: boolean },
): Promise<ProcessRun> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => {
      if (options.keepOutput !== false) {
        stdout.push(chunk);
      }
    });
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    let wallMs = 0;
    child.on('error', reject);
    child.on('exit', () => {
      wallMs = performance.now() - started;
    });
    child.on('close', (code) =>
      resolve({
        wallMs,
        code,
        stdout: Buffer.concat(stdout).toString(),
        stderr: Buffer.concat(stderr).toString(),
      }),
    );
  });
}

/** Returns the run summary of a `--json` CLI run, which is its last JSON line. */
export function summaryOf(run: ProcessRun): Record<string, unknown> {
  const lines = run.stdout.trim().split('\n');
  const last = lines.at(-1) ?? '';
  try {
    const parsed = JSON.parse(last) as Record<string, unknown>;
    if (parsed.msg === 'run summary') {
      return parsed;
    }
  } catch {
    // Reported below with the output.
  }
  throw new Error(
    `no run summary as the last line (exit ${run.code}); stderr:\n${run.stderr.slice(0, 2000)}`,
  );
}
