/** Process identity: a pid plus its start time, so a reused pid is not taken for a live process. */
import { existsSync, readFileSync } from 'node:fs';
import { errorCode, isObject } from './helpers.js';

export interface ProcessIdentity {
  pid: number;
  /** Start time in clock ticks after boot (`/proc/<pid>/stat` field 22); null where `/proc` is missing. */
  start: string | null;
}

export const HAS_PROC = existsSync('/proc/self/stat');

export function readProcessStat(pid: number): { command: string; state: string; start: string } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may contain spaces, so split after it.
  const commandEnd = text.lastIndexOf(')');
  const command = text.slice(text.indexOf('(') + 1, commandEnd);
  const fields = text.slice(commandEnd + 2).split(' ');
  const state = fields[0];
  const start = fields[19];
  if (state === undefined || start === undefined) {
    return undefined;
  }
  return { command, state, start };
}

export function identifyProcess(pid: number): ProcessIdentity {
  return { pid, start: HAS_PROC ? (readProcessStat(pid)?.start ?? null) : null };
}

export function parseIdentity(value: unknown): ProcessIdentity | undefined {
  if (!isObject(value) || !isValidPid(value.pid)) {
    return undefined;
  }
  if (value.start !== null && typeof value.start !== 'string') {
    return undefined;
  }
  return { pid: value.pid, start: value.start };
}

export function isValidPid(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0;
}

export function isSameProcess(a: ProcessIdentity, b: ProcessIdentity): boolean {
  return a.pid === b.pid && a.start === b.start;
}

/** True while the process exists, is not a zombie, and (on Linux) started at the recorded time. */
export function isAlive(identity: ProcessIdentity): boolean {
  // A pid of 0 or below would address a whole process group.
  if (!isValidPid(identity.pid)) {
    return false;
  }
  try {
    process.kill(identity.pid, 0);
  } catch (error) {
    if (errorCode(error) !== 'EPERM') {
      return false;
    }
  }
  if (!HAS_PROC) {
    return true;
  }
  const stat = readProcessStat(identity.pid);
  if (stat === undefined || stat.state === 'Z' || stat.state === 'X') {
    return false;
  }
  return identity.start === null || stat.start === identity.start;
}
