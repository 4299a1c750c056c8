import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { migrate } from '../src/core/db/migrate.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { type ElasticsearchFake, startElasticsearchFake } from '../src/sandbox/elasticsearch.js';
import { type OpenAIFake, startOpenAIFake } from '../src/sandbox/openai.js';
import { startZusNetwork, type ZusNetworkFake } from '../src/sandbox/zus-network.js';
import { runCli } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { type WalletFile, walletFolder } from './support/money.js';

const ZCN = 10_000_000_000n;

let database: TestDatabase;
let network: ZusNetworkFake;
let elasticsearch: ElasticsearchFake;
let openai: OpenAIFake;
const OPENAI_KEY = 'sk-doctor-test';
const wallets = walletFolder();
let team: WalletFile;
let operator: WalletFile;

before(async () => {
  database = await createTestDatabase('doctor');
  await migrate(database.url, createMemoryLogger());
  network = await startZusNetwork({ sharders: 2, miners: 2 });
  elasticsearch = await startElasticsearchFake();
  openai = await startOpenAIFake({ apiKey: OPENAI_KEY });
  team = await wallets.create('team');
  operator = await wallets.create('operator');
  network.setBalance(team.wallet.clientId, 20_000n * ZCN);
});

after(async () => {
  await Promise.all([network.close(), elasticsearch.close(), openai.close()]);
  await database.drop();
  wallets.remove();
});

function env(extra: Record<string, string> = {}) {
  return {
    DATABASE_URL: database.url,
    ZUS_SHARDERS: network.sharderUrls.join(','),
    ZUS_MINERS: network.minerUrls.join(','),
    ZBOX_TEAM_WALLET: team.path,
    ZBOX_OPERATOR_WALLET: operator.path,
    ELASTICSEARCH_URL: elasticsearch.url,
    OPENAI_API_KEY: OPENAI_KEY,
    OPENAI_BASE_URL: openai.url,
    ZBOX_FIREBASE_CREDENTIALS: JSON.stringify({
      type: 'service_account',
      project_id: 'zbox-test',
      client_email: 'pusher@zbox-test.iam.example',
      private_key: 'not-a-real-key-for-doctor',
    }),
    ...extra,
  };
}

async function doctor(extra: Record<string, string> = {}) {
  const result = await runCli(['doctor', '--json'], env(extra));
  const report = result.lines.find((line) => line.msg === 'doctor') as
    | { checks: Array<Record<string, string>> }
    | undefined;
  assert.ok(report !== undefined, result.stdout + result.stderr);
  return {
    code: result.code,
    output: result.stdout + result.stderr,
    checks: new Map(report.checks.map((check) => [check.check, check])),
  };
}

test('doctor passes when every dependency answers', async () => {
  const { code, checks } = await doctor();
  assert.equal(code, 0, JSON.stringify([...checks.values()]));
  for (const check of checks.values()) {
    // No S3 bucket is configured here, so that one check is skipped.
    assert.equal(
      check.status,
      check.check === 's3 bucket' ? 'SKIP' : 'OK',
      `${check.check}: ${check.detail}`,
    );
  }
  assert.match(String(checks.get('openai')?.detail), /^reachable/);
  assert.match(String(checks.get('team wallet')?.detail), /balance 20000 ZCN/);
});

test('doctor fails on a wrong OpenAI key', async () => {
  const { code, checks, output } = await doctor({ OPENAI_API_KEY: 'sk-wrong-key-for-doctor' });
  assert.equal(code, 4);
  assert.equal(checks.get('openai')?.status, 'FAIL');
  assert.doesNotMatch(output, /sk-wrong-key-for-doctor/);
});

test('doctor fails on an unreachable Elasticsearch', async () => {
  const { code, checks } = await doctor({ ELASTICSEARCH_URL: 'http://127.0.0.1:9' });
  assert.equal(code, 4);
  assert.equal(checks.get('elasticsearch')?.status, 'FAIL');
  assert.equal(checks.get('database')?.status, 'OK', 'other checks still run');
});

test('doctor names missing configuration per worker', async () => {
  const { code, checks } = await doctor({ ELASTICSEARCH_URL: '', ZBOX_OPERATOR_WALLET: '' });
  assert.equal(code, 4);
  assert.equal(checks.get('config expiring-allocations')?.detail, 'missing ELASTICSEARCH_URL');
  assert.equal(checks.get('config authorized-blobbers')?.detail, 'missing ZBOX_OPERATOR_WALLET');
  assert.equal(checks.get('config free-storage')?.status, 'OK');
  assert.equal(checks.get('elasticsearch')?.status, 'SKIP');
});

test('doctor flags a balance below one run of spending', async () => {
  const { code, checks } = await doctor({
    ZBOX_MAX_SPEND_PER_RUN_ZCN: '50000',
    ZBOX_MAX_SPEND_PER_DAY_ZCN: '90000',
  });
  assert.equal(code, 4);
  assert.match(String(checks.get('team wallet')?.detail), /balance is below what one run may spend/);
});

test('doctor reports invalid values without secrets', async () => {
  const { code, checks, output } = await doctor({ ZBOX_CONCURRENCY: 'lots', ELASTICSEARCH_API_KEY: '' });
  assert.equal(code, 4);
  assert.match(String(checks.get('variables')?.detail), /ZBOX_CONCURRENCY: invalid value/);
  assert.doesNotMatch(output, /not-a-real-key-for-doctor/);
});
