import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { describeVariables } from '../src/core/config.js';
import { REPO_ROOT, runCli } from './support/cli.js';

test('help lists every command with its schedule', async () => {
  const result = await runCli(['--help'], {});
  assert.equal(result.code, 0);
  for (const [command, schedule] of [
    ['expiring-allocations', 'hourly'],
    ['delete-wallet-transactions', 'daily'],
    ['free-storage', 'hourly'],
    ['migrate', 'before each deploy'],
  ]) {
    assert.match(result.stdout, new RegExp(`${command} \\[options\\][\\s\\S]*?\\[${schedule}\\]`), command);
  }
  assert.match(result.stdout, /130\/143/);
});

test('version prints the package version', async () => {
  const result = await runCli(['--version'], {});
  const pkg = JSON.parse(readFileSync(`${REPO_ROOT}/package.json`, 'utf8')) as { version: string };
  assert.equal(result.code, 0);
  assert.equal(result.stdout.trim(), pkg.version);
});

test('unknown flag exits 2', async () => {
  const result = await runCli(['free-storage', '--no-such-flag'], {});
  assert.equal(result.code, 2);
  assert.match(result.stderr, /unknown option '--no-such-flag'/);
});

test('limit of zero exits 2', async () => {
  const result = await runCli(['free-storage', '--limit', '0'], {});
  assert.equal(result.code, 2);
  assert.match(result.stderr, /expected a whole number of at least 1, got "0"/);
});

test('missing variables are all named at once', async () => {
  const result = await runCli(['free-storage', '--json'], {});
  assert.equal(result.code, 2);
  assert.match(
    result.stderr,
    /free-storage: missing DATABASE_URL \(postgres:\/\/USER:PASSWORD@HOST:5432\/DATABASE, or pass --embedded\); ZUS_SHARDERS or ZUS_BLOCK_WORKER\./,
  );
});

test('worker requirements are checked before the database', async () => {
  const result = await runCli(['funding-zbox', '--json'], {
    DATABASE_URL: 'postgres://admin:hunter2secret@127.0.0.1:9/zbox',
  });
  assert.equal(result.code, 2, 'a configuration error, not an unreachable database (3)');
  assert.match(
    result.stderr,
    /funding-zbox: missing ZUS_SHARDERS or ZUS_BLOCK_WORKER; ZBOX_TEAM_WALLET; ZBOX_FIREBASE_CREDENTIALS\./,
  );
  assert.doesNotMatch(result.stderr + result.stdout, /hunter2secret/);
});

test('invalid variable names the variable and the fix', async () => {
  const result = await runCli(['free-storage', '--json'], {
    DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/test',
    ZBOX_CONCURRENCY: 'many',
  });
  assert.equal(result.code, 2);
  assert.match(
    result.stderr,
    /ZBOX_CONCURRENCY: invalid value \(value "many"\): not a number \(set it to a whole number/,
  );
  assert.doesNotMatch(result.stderr, /expected number|NaN/, "zod's own wording is replaced");
});

test('invalid secret value is not printed', async () => {
  const result = await runCli(['free-storage', '--json'], {
    DATABASE_URL: 'mysql://admin:hunter2secret@db/x',
  });
  assert.equal(result.code, 2);
  assert.match(result.stderr, /DATABASE_URL: invalid value: must be a postgres:\/\/ connection URL/);
  assert.doesNotMatch(result.stderr + result.stdout, /hunter2secret/);
});

test('unreachable database exits 3 without the password', async () => {
  const result = await runCli(['free-storage', '--json'], {
    DATABASE_URL: 'postgres://admin:hunter2secret@127.0.0.1:9/zbox',
    ZUS_SHARDERS: 'http://127.0.0.1:9',
  });
  assert.equal(result.code, 3);
  assert.match(result.stderr, /database unreachable at 127\.0\.0\.1:9\/zbox/);
  assert.doesNotMatch(result.stderr + result.stdout, /hunter2secret/);
});

test('lease shorter than deadline plus grace exits 2', async () => {
  const result = await runCli(['free-storage', '--json'], {
    DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/test',
    ZBOX_RUN_DEADLINE_SECONDS: '300',
    ZBOX_GRACE_SECONDS: '30',
    ZBOX_LEASE_SECONDS: '300',
  });
  assert.equal(result.code, 2);
  assert.match(
    result.stderr,
    /ZBOX_LEASE_SECONDS: 300 is shorter than the run deadline \(300\) \+ grace \(30\)/,
  );
});

test('id on a singleton worker exits 2', async () => {
  for (const worker of ['free-storage', 'delete-wallet-transactions', 'delete-openai-files']) {
    const result = await runCli([worker, '--id', '4', '--json'], {
      DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/test',
    });
    assert.equal(result.code, 2, worker);
    assert.match(result.stderr, /unknown option '--id'/, worker);
  }
});

test('README lists every variable', () => {
  const readme = readFileSync(`${REPO_ROOT}/README.md`, 'utf8');
  for (const variable of describeVariables()) {
    assert.match(
      readme,
      new RegExp(`\\| \`${variable.name}\` \\|`),
      `${variable.name} is missing from README.md`,
    );
  }
});
