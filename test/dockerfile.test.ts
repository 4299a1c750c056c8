import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { REPO_ROOT } from './support/cli.js';

// No container engine runs in CI, so these checks read the Dockerfile's instructions; the
// entrypoint's signal handling is covered by the CLI tests, which start the same command.
const dockerfile = readFileSync(`${REPO_ROOT}/Dockerfile`, 'utf8');
const instructions = dockerfile
  .split('\n')
  .filter((line) => line.trim() !== '' && !line.trim().startsWith('#'))
  .join('\n')
  .replace(/\\\n\s*/g, ' ')
  .split('\n');

function stages(): string[][] {
  const result: string[][] = [];
  for (const line of instructions) {
    if (line.startsWith('FROM ')) {
      result.push([]);
    }
    result.at(-1)?.push(line);
  }
  return result;
}

test('both stages use Node 24 slim', () => {
  const froms = instructions.filter((line) => line.startsWith('FROM '));
  assert.equal(froms.length, 2, 'multi-stage build');
  for (const from of froms) {
    assert.match(from, /^FROM node:24-slim\b/);
  }
});

test('final stage runs as a non-root user', () => {
  const final = stages().at(-1) ?? [];
  const user = final.find((line) => line.startsWith('USER '));
  assert.ok(user !== undefined, 'USER is set');
  assert.doesNotMatch(user, /^USER (root|0)(:|$)/);
});

test('entrypoint is exec form running the CLI', () => {
  const entrypoint = instructions.find((line) => line.startsWith('ENTRYPOINT '));
  assert.ok(entrypoint !== undefined);
  const args = JSON.parse(entrypoint.slice('ENTRYPOINT '.length)) as string[];
  assert.deepEqual(args, ['node', '/app/bin/zbox-workers']);
});

test('final stage has production dependencies only', () => {
  const build = stages()[0] ?? [];
  assert.ok(build.some((line) => /npm prune --omit=dev/.test(line)));
  const final = stages().at(-1) ?? [];
  assert.ok(!final.some((line) => /npm (ci|install)/.test(line)), 'no install in the final stage');
  assert.ok(!final.some((line) => /COPY .*\bsrc\b/.test(line)), 'no TypeScript sources in the final stage');
});

test('temporary files go to /tmp', () => {
  assert.ok(instructions.some((line) => /TMPDIR=\/tmp/.test(line)));
});
