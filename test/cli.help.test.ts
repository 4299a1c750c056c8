import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { StopController } from '../src/core/engine/stop.js';
import { buildProgram, type CliIo } from '../src/program.js';
import { OPERATIONS_COMMANDS, plainHelp, WORKER_COMMANDS } from '../src/usage.js';
import { runCli } from './support/cli.js';

/** Help text as the commander program prints it for `args` at `width` columns. */
async function commanderHelp(args: string[], width: number): Promise<string> {
  let output = '';
  const io: CliIo = {
    env: {},
    stop: new StopController(),
    isTty: false,
    helpWidth: width,
    writeOut: (text) => {
      output += text;
    },
    writeErr: () => undefined,
  };
  const program = buildProgram(io, () => undefined);
  await assert.rejects(program.parseAsync(['node', 'zbox-workers', ...args]), { exitCode: 0 });
  return output;
}

const COMMAND_NAMES = [...WORKER_COMMANDS, ...OPERATIONS_COMMANDS].map((command) => command.name);

describe('plain help', () => {
  // Commander stops wrapping below 40 columns, and a command's option column starts near column 40.
  for (const width of [30, 60, 80, 132]) {
    test(`program help matches commander at ${width} columns`, async () => {
      assert.equal(plainHelp(['--help'], width), await commanderHelp(['--help'], width));
    });

    test(`command help matches commander at ${width} columns`, async () => {
      for (const name of COMMAND_NAMES) {
        assert.equal(plainHelp([name, '--help'], width), await commanderHelp([name, '--help'], width), name);
      }
    });
  }

  test('accepts every spelling of a help request', async () => {
    const program = plainHelp(['--help'], 80);
    const requeue = plainHelp(['requeue', '--help'], 80);

    assert.equal(plainHelp(['-h'], 80), program);
    assert.equal(plainHelp(['help'], 80), program);
    assert.equal(plainHelp(['requeue', '-h'], 80), requeue);
    assert.equal(plainHelp(['help', 'requeue'], 80), requeue);
  });

  test('leaves other command lines to commander', () => {
    assert.equal(plainHelp([], 80), undefined);
    assert.equal(plainHelp(['free-storage'], 80), undefined);
    assert.equal(plainHelp(['free-storage', '--json', '--help'], 80), undefined);
    assert.equal(plainHelp(['no-such-command', '--help'], 80), undefined);
    assert.equal(plainHelp(['help', 'no-such-command'], 80), undefined);
  });

  test('binary prints command help', async () => {
    const result = await runCli(['delete-wallet-transactions', '--help'], {});

    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, plainHelp(['delete-wallet-transactions', '--help'], 80));
    assert.match(result.stdout, /--retention-days <days>/);
  });
});
