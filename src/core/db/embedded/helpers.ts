/** Small helpers shared by the files of the embedded database. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { RESERVED_PORT } from './constants.js';

export const execFileAsync = promisify(execFile);

/** Checks that a port is a valid TCP port other than RESERVED_PORT, even when a state file names it. */
export function isUsablePort(value: unknown): value is number {
  return (
    typeof value === 'number' &&
    Number.isInteger(value) &&
    value > 0 &&
    value < 65_536 &&
    value !== RESERVED_PORT
  );
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function errorCode(error: unknown): unknown {
  return isObject(error) || error instanceof Error ? (error as { code?: unknown }).code : undefined;
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
