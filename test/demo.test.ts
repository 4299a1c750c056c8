import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { REPO_ROOT, runCli } from './support/cli.js';

// The data folder sits under the repository's .zbox-data, which the embedded server can reach
// as root; the demo creates its own database there and drops it on the next demo.
mkdirSync(join(REPO_ROOT, '.zbox-data'), { recursive: true });
const dataDir = mkdtempSync(join(REPO_ROOT, '.zbox-data', 'demo-test-'));

after(() => {
  rmSync(dataDir, { recursive: true, force: true });
});

test('demo runs every worker against the simulators', { timeout: 180_000 }, async () => {
  const result = await runCli(['demo', '--json'], { ZBOX_DATA_DIR: dataDir }, { timeoutMs: 170_000 });
  assert.equal(result.code, 0, result.stdout.slice(-3000) + result.stderr);
  const status = result.lines.find((line) => line.msg === 'status') as {
    workers: Array<Record<string, unknown>>;
  };
  assert.ok(status !== undefined, 'the final status is printed');
  for (const worker of status.workers) {
    const lastRun = worker.last_run as { exit_code: number; summary: { succeeded: number } } | null;
    assert.ok(lastRun !== null, `${worker.worker} ran`);
    assert.equal(lastRun.exit_code, 0, `${worker.worker} exit code`);
  }
  const succeeded = new Map(
    status.workers.map((worker) => [
      worker.worker,
      (worker.last_run as { summary: { succeeded: number } }).summary.succeeded,
    ]),
  );
  assert.equal(succeeded.get('create-allocation'), 2);
  assert.equal(succeeded.get('funding-zbox'), 2);
  assert.equal(succeeded.get('expiring-allocations'), 3);
  assert.equal(succeeded.get('openai-batch-request'), 1);
  assert.ok(
    result.lines.some((line) => line.msg === 'batch created'),
    'a batch was created from the shared files',
  );
  const plans = result.lines.filter((line) => String(line.msg).startsWith('would '));
  assert.ok(plans.length >= 6, 'the dry runs printed their plans');
  const pushes = result.lines.find((line) => line.msg === 'FCM push batch finished');
  assert.equal(pushes?.sent, 2, "alice's two devices got the push");
  assert.doesNotMatch(result.stdout, /"mnemonics"/);
});
