import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { StopController } from '../src/core/engine/stop.js';
import { buildProgram, type CliIo } from '../src/program.js';
import { commanderArgs, OPERATIONS_COMMANDS, plainHelp, WORKER_COMMANDS } from '../src/usage.js';
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
    assert.match(
      result.stdout,
      /--batch-size <rows>\s+rows of the table, expired or not, per range\s+transaction,[\s\S]*rows-per-block\s+estimate/,
    );
    assert.doesNotMatch(result.stdout, /rows deleted per transaction/);
  });

  test('only queue workers list --id', () => {
    for (const command of WORKER_COMMANDS) {
      const help = plainHelp([command.name, '--help'], 80) ?? '';
      const singleton = ['delete-wallet-transactions', 'free-storage', 'delete-openai-files'].includes(
        command.name,
      );

      assert.equal(/--id <id>/.test(help), !singleton, command.name);
    }
  });
});

describe('help for an unknown command', () => {
  test('names the command and exits 2', async () => {
    const result = await runCli(['help', 'frobnicate'], {});

    assert.equal(result.code, 2);
    assert.match(result.stderr, /^error: unknown command 'frobnicate'$/m);
    assert.doesNotMatch(result.stdout + result.stderr, /Commands:/, 'the full help is not printed');
  });

  test('suggests a close command name', async () => {
    const result = await runCli(['help', 'free-stroage'], {});

    assert.equal(result.code, 2);
    assert.match(result.stderr, /unknown command 'free-stroage'\n\(Did you mean free-storage\?\)/);
  });

  test('keeps help for known commands and commander spellings', () => {
    assert.deepEqual(commanderArgs(['help', 'frobnicate', '--json']), ['frobnicate', '--json']);
    assert.deepEqual(commanderArgs(['help', 'requeue']), ['help', 'requeue']);
    assert.deepEqual(commanderArgs(['help', 'help']), ['help', 'help']);
    assert.deepEqual(commanderArgs(['help', '--verbose']), ['help', '--verbose']);
    assert.deepEqual(commanderArgs(['free-storage', '--json']), ['free-storage', '--json']);
  });
});
