import { type ChildProcess, spawn } from 'node:child_process';

/** A small seeded random generator (mulberry32), so a failing crash sequence can be replayed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let value = state;
    value = Math.imul(value ^ (value >>> 15), value | 1);
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61);
    return ((value ^ (value >>> 14)) >>> 0) / 4294967296;
  };
}

export interface CrashLoopOptions {
  /** Command and arguments of one run, for example `[node, bin, 'create-allocation', '--json']`. */
  command: string[];
  env: Record<string, string>;
  /** Kills that must land while work remains; the loop fails when the work ends sooner. */
  minKills: number;
  /** Upper bound on runs started, against a loop that never finishes. */
  maxRuns: number;
  seed: number;
  /** A kill lands at a uniformly random moment in [minDelayMs, maxDelayMs] after the start. */
  minDelayMs: number;
  maxDelayMs: number;
  /** Makes the rows a killed run held due again, as the end of their lease would. */
  expireLeases: () => Promise<void>;
  isDone: () => Promise<boolean>;
  /** Adds tasks when the work ends before `minKills` kills landed, so every kill hits live work. */
  addWork: () => Promise<void>;
  /** Finishing runs allowed after the kills before giving up. */
  maxFinishingRuns?: number;
}

export interface CrashLoopResult {
  /** Runs killed while work remained. */
  killed: number;
  /** Runs that ended by themselves before their kill came. */
  finishedEarly: number;
  exitCodes: number[];
}

function start(
  command: string[],
  env: Record<string, string>,
): { child: ChildProcess; done: Promise<number | null> } {
  const [program, ...args] = command;
  const child = spawn(program as string, args, { env, stdio: ['ignore', 'ignore', 'ignore'] });
  const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, done };
}

/**
 * Starts runs and kills each with SIGKILL at a random moment, making a killed run's leases
 * expire after each kill, until the work is done and at least `minKills` kills landed while work
 * remained (work is added when it runs out first). Errors carry the seed, so the sequence can be
 * replayed.
 */
export async function crashUntilDone(options: CrashLoopOptions): Promise<CrashLoopResult> {
  const random = seededRandom(options.seed);
  const result: CrashLoopResult = { killed: 0, finishedEarly: 0, exitCodes: [] };
  for (let runs = 0; runs < options.maxRuns; runs++) {
    if (await options.isDone()) {
      if (result.killed >= options.minKills) {
        break;
      }
      await options.addWork();
    }
    const delay = options.minDelayMs + random() * (options.maxDelayMs - options.minDelayMs);
    const run = start(options.command, options.env);
    const timer = setTimeout(() => run.child.kill('SIGKILL'), delay);
    const code = await run.done;
    clearTimeout(timer);
    if (code === null) {
      result.killed += 1;
    } else {
      result.finishedEarly += 1;
      result.exitCodes.push(code);
    }
    await options.expireLeases();
  }
  if (!(await options.isDone())) {
    throw new Error(`work not done after ${options.maxRuns} runs (seed ${options.seed})`);
  }
  if (result.killed < options.minKills) {
    throw new Error(
      `only ${result.killed} kills landed before the work was done, ${options.minKills} wanted: add tasks (seed ${options.seed})`,
    );
  }
  return result;
}
