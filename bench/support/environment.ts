import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

/**
 * Facts a benchmark records about where it ran (machine, versions, commit, load average), and the
 * wait for a quiet machine before measuring.
 */

/** PostgreSQL server the benchmarks use when DATABASE_URL is unset. */
export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';

export function benchDatabaseUrl(): string {
  const url = process.env.DATABASE_URL;
  return url === undefined || url === '' ? DEFAULT_DATABASE_URL : url;
}

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  node: string;
  postgres: string;
  /** Commit of the measured code, with a note when src/ differs from it. */
  commit: string;
}

export async function readMachineInfo(databaseUrl: string): Promise<MachineInfo> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const result = await client.query<{ server_version: string }>('SHOW server_version');
    const processors = cpus();
    return {
      cpuModel: processors[0]?.model.trim() ?? 'unknown CPU',
      cores: processors.length,
      memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
      node: process.version,
      postgres: result.rows[0]?.server_version ?? 'unknown',
      commit: readCommit(),
    };
  } finally {
    await client.end();
  }
}

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

function readCommit(): string {
  try {
    const git = (args: string[]) => execFileSync('git', args, { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
    const commit = git(['rev-parse', '--short', 'HEAD']);
    const changed = git(['status', '--porcelain', '--', 'src']) !== '';
    return changed ? `${commit} with uncommitted changes` : commit;
  } catch {
    return 'unknown commit';
  }
}

export function describeMachine(machine: MachineInfo): string {
  return `${machine.cpuModel}, ${machine.cores} cores, ${machine.memoryGiB} GiB`;
}

export function describeVersions(machine: MachineInfo): string {
  return `Node ${machine.node}, PostgreSQL ${machine.postgres}, zbox-workers ${machine.commit}`;
}

/** One-minute load average, from /proc/loadavg. */
export function loadAverage(): number {
  return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
}

export interface QuietCheck {
  /** Load average when measuring started. */
  loadAtStart: number;
  waitedSeconds: number;
  /** False when the wait ran out and the benchmark measured on a busy machine. */
  quiet: boolean;
}

/**
 * Waits until the one-minute load average is below `threshold`, polling every 15 seconds, for at
 * most BENCH_QUIET_WAIT_MINUTES (default 20). Past that it measures anyway and prints the load.
 */
export async function waitForQuietMachine(threshold = 1): Promise<QuietCheck> {
  const maxWaitMinutes = Number(process.env.BENCH_QUIET_WAIT_MINUTES ?? '20');
  const started = performance.now();
  for (;;) {
    const load = loadAverage();
    const waitedSeconds = Math.round((performance.now() - started) / 1000);
    if (load < threshold) {
      return { loadAtStart: load, waitedSeconds, quiet: true };
    }
    if (waitedSeconds >= maxWaitMinutes * 60) {
      console.log(`load average ${load} after ${waitedSeconds} s of waiting: measuring on a busy machine`);
      return { loadAtStart: load, waitedSeconds, quiet: false };
    }
    console.log(`load average ${load} is not below ${threshold}: waiting (${waitedSeconds} s so far)`);
    await new Promise((resolve) => setTimeout(resolve, 15_000));
  }
}

/** Prints the header every benchmark starts with. */
export function printHeader(title: string, machine: MachineInfo, quiet: QuietCheck, method: string[]) {
  console.log(`# ${title}`);
  console.log(`machine:  ${describeMachine(machine)}`);
  console.log(`versions: ${describeVersions(machine)}`);
  console.log(
    `load:     ${quiet.loadAtStart} (1-minute average) at start, after waiting ${quiet.waitedSeconds} s${quiet.quiet ? '' : ' (not quiet)'}`,
  );
  console.log('method:');
  for (const line of method) {
    console.log(`  - ${line}`);
  }
}
