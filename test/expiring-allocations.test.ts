import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { daysLeft, expiryMessage } from '../src/commands/expiring-allocations.js';
import { migrate } from '../src/core/db/migrate.js';
import { openPool } from '../src/core/db/pool.js';
import { createMemoryLogger } from '../src/core/output/logger.js';
import { type ElasticsearchFake, startElasticsearchFake } from '../src/sandbox/elasticsearch.js';
import { fakeAllocationBody, startZusNetwork, type ZusNetworkFake } from '../src/sandbox/zus-network.js';
import { runCli, summaryOf } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

const INDEX = 'zbox-notifications';
const HOUR = 3_600_000;

let database: TestDatabase;
let pool: DatabasePool;
let network: ZusNetworkFake;
let elasticsearch: ElasticsearchFake;

before(async () => {
  database = await createTestDatabase('expiring_allocations');
  await migrate(database.url, createMemoryLogger());
  pool = await openPool(database.url, { maximumPoolSize: 2 });
  network = await startZusNetwork({ sharders: 3 });
  elasticsearch = await startElasticsearchFake();
});

after(async () => {
  await Promise.all([network.close(), elasticsearch.close()]);
  await pool.end();
  await database.drop();
});

interface Seed {
  id: string;
  /** Hours from now; null for an allocation without an expiry. */
  inHours: number | null;
  finalized?: boolean;
  /** Expiry on chain when it differs from the stored one (extended outside the platform). */
  chainInHours?: number;
  /** Flags on chain when they differ from the stored ones (closed outside the platform). */
  chainFinalized?: boolean;
  chainCanceled?: boolean;
}

/** Derives a 64-hex allocation id, shaped like the chain's ids, from a readable label. */
function allocationId(label: string): string {
  return createHash('sha256').update(label).digest('hex');
}

/** Whole seconds, as the chain stores expiration_date. */
function hoursFromNow(hours: number): Date {
  return new Date(Math.floor((Date.now() + hours * HOUR) / 1000) * 1000);
}

async function seed(allocations: Seed[]) {
  await pool.query(sql.unsafe`TRUNCATE allocations, allocation_expiry_notices, zbox_runs CASCADE`);
  for (const seedRow of allocations) {
    const allocation = { ...seedRow, id: allocationId(seedRow.id), label: seedRow.id };
    const expiresAt = allocation.inHours === null ? null : hoursFromNow(allocation.inHours);
    await pool.query(sql.unsafe`
      INSERT INTO allocations (id, owner_client_id, user_id, size_bytes, data_shards, parity_shards, expires_at, finalized)
      VALUES (${allocation.id}, ${`owner-${allocation.label}`}, ${`user-${allocation.label}`}, 2147483648, 2, 2,
              ${expiresAt?.toISOString() ?? null}, ${allocation.finalized ?? false})`);
    const chainExpiry =
      allocation.chainInHours !== undefined
        ? hoursFromNow(allocation.chainInHours)
        : (expiresAt ?? hoursFromNow(-1));
    network.upsertAllocation(
      fakeAllocationBody({
        id: allocation.id,
        ownerId: `owner-${allocation.label}`,
        expiresAt: chainExpiry,
        finalized: allocation.chainFinalized ?? allocation.finalized ?? false,
        canceled: allocation.chainCanceled ?? false,
      }),
    );
  }
}

function labelOf(id: string): string {
  const labels = ['a20h', 'b60h', 'c6d', 'd10d', 'past', 'none', 'final'];
  return labels.find((label) => allocationId(label) === id) ?? id;
}

function env(extra: Record<string, string> = {}) {
  return {
    DATABASE_URL: database.url,
    ZUS_SHARDERS: network.sharderUrls.join(','),
    ELASTICSEARCH_URL: elasticsearch.url,
    ...extra,
  };
}

function documents() {
  return elasticsearch.documents(INDEX);
}

test('sends the tightest window once across reruns', async () => {
  await seed([
    { id: 'a20h', inHours: 20 },
    { id: 'b60h', inHours: 60 },
    { id: 'c6d', inHours: 6 * 24 },
    { id: 'd10d', inHours: 10 * 24 },
    { id: 'past', inHours: -5 },
    { id: 'none', inHours: null },
    { id: 'final', inHours: 10, finalized: true },
  ]);
  const first = await runCli(['expiring-allocations', '--json'], env());
  assert.equal(first.code, 0, first.stderr + first.stdout);
  const docs = documents();
  const byAllocation = new Map([...docs.values()].map((doc) => [labelOf(String(doc.allocation_id)), doc]));
  assert.deepEqual([...byAllocation.keys()].sort(), ['a20h', 'b60h', 'c6d']);
  assert.equal(byAllocation.get('a20h')?.window_days, 1, '20 hours left gets the 1-day notice only');
  assert.equal(byAllocation.get('a20h')?.days_left, 1);
  assert.equal(byAllocation.get('a20h')?.message, 'Your allocation expires in 1 day');
  assert.equal(byAllocation.get('b60h')?.window_days, 3);
  assert.equal(byAllocation.get('b60h')?.message, 'Your allocation expires in 3 days');
  assert.equal(byAllocation.get('c6d')?.window_days, 7);
  assert.equal(byAllocation.get('c6d')?.user_id, 'user-c6d');
  assert.equal(byAllocation.get('c6d')?.days_left, 6);
  assert.ok(!Number.isNaN(Date.parse(String(byAllocation.get('c6d')?.created_at))));
  assert.equal(summaryOf(first).succeeded, 3);

  const writesBefore = elasticsearch.requestCount;
  const second = await runCli(['expiring-allocations', '--json'], env());
  assert.equal(second.code, 0);
  assert.equal(summaryOf(second).claimed, 0, 'nothing is due on a rerun');
  assert.equal(elasticsearch.requestCount, writesBefore, 'a rerun sends nothing');
  assert.equal(documents().size, 3);
  const notices = await pool.oneFirst(sql.unsafe`SELECT count(*) FROM allocation_expiry_notices`);
  assert.equal(notices, 3n);
});

test('allocation extended on chain gets no notice now', async () => {
  await seed([{ id: 'extended', inHours: 30, chainInHours: 30 * 24 }]);
  const before = documents().size;
  const result = await runCli(['expiring-allocations', '--json'], env());
  assert.equal(result.code, 0, result.stdout);
  assert.equal(documents().size, before, 'no document for an extended allocation');
  const row = await pool.one(
    sql.type(z.object({ expires_at: z.date(), outcome: z.string().nullable() }))`
      SELECT a.expires_at, n.outcome FROM allocations a JOIN allocation_expiry_notices n ON n.allocation_id = a.id`,
  );
  assert.equal(row.outcome, 'superseded');
  assert.ok(row.expires_at.getTime() > Date.now() + 29 * 24 * HOUR, 'the stored expiry is the chain one');
});

const noticeState = z.object({
  allocation_id: z.string(),
  expires_at: z.date(),
  status: z.string(),
  outcome: z.string().nullable(),
  sent_at: z.date().nullable(),
});
const allocationState = z.object({
  id: z.string(),
  expires_at: z.date().nullable(),
  finalized: z.boolean(),
  canceled: z.boolean(),
  updated_at: z.date(),
});

async function allocationRows() {
  const rows = await pool.any(
    sql.type(allocationState)`SELECT id, expires_at, finalized, canceled, updated_at FROM allocations`,
  );
  return new Map(rows.map((row) => [row.id, row]));
}

/** Inserts a pending notice as an earlier run would have queued it. */
async function queueNotice(label: string, expiresAt: Date, windowDays: number) {
  const id = allocationId(label);
  await pool.query(sql.unsafe`
    INSERT INTO allocation_expiry_notices (allocation_id, user_id, expires_at, window_days, document_id)
    VALUES (${id}, ${`user-${label}`}, ${expiresAt.toISOString()}, ${windowDays},
            ${`expiry-${id}-${expiresAt.getTime() / 1000}-${windowDays}d`})`);
}

test('one batch records every outcome and chain state', async () => {
  await seed([
    { id: 'sent', inHours: 20 },
    { id: 'moved', inHours: 30, chainInHours: 50 },
    { id: 'closed', inHours: 40, chainFinalized: true },
    { id: 'cancel', inHours: 45, chainCanceled: true },
    { id: 'lapsed', inHours: -1 },
  ]);
  // Queued by an earlier run while the allocation had not expired yet, for the expiry the chain reports.
  const lapsedExpiry = await pool.oneFirst(
    sql.type(
      z.object({ expires_at: z.date() }),
    )`SELECT expires_at FROM allocations WHERE id = ${allocationId('lapsed')}`,
  );
  await queueNotice('lapsed', lapsedExpiry, 1);
  // Backdated so that a later updated_at shows which rows the run wrote.
  await pool.query(sql.unsafe`UPDATE allocations SET updated_at = now() - interval '1 day'`);
  const before = await allocationRows();

  const result = await runCli(['expiring-allocations', '--json'], env());

  assert.equal(result.code, 0, result.stdout);
  assert.equal(summaryOf(result).succeeded, 5);
  const notices = await pool.any(
    sql.type(
      noticeState,
    )`SELECT allocation_id, expires_at, status, outcome, sent_at FROM allocation_expiry_notices`,
  );
  const notice = (label: string) => notices.find((row) => row.allocation_id === allocationId(label));
  assert.equal(notice('sent')?.outcome, 'created');
  assert.ok(notice('sent')?.sent_at instanceof Date, 'a written notice has sent_at');
  assert.equal(notice('moved')?.outcome, 'superseded');
  assert.equal(notice('closed')?.outcome, 'closed');
  assert.equal(notice('cancel')?.outcome, 'closed');
  assert.equal(notice('lapsed')?.outcome, 'expired');
  for (const label of ['moved', 'closed', 'cancel', 'lapsed']) {
    assert.equal(notice(label)?.sent_at, null, `${label} has no sent_at`);
    assert.equal(notice(label)?.status, 'succeeded', `${label} is succeeded`);
  }

  const after = await allocationRows();
  const row = (label: string) => after.get(allocationId(label));
  assert.ok(
    (row('moved')?.expires_at?.getTime() ?? 0) > Date.now() + 49 * HOUR,
    'the stored expiry is the chain one',
  );
  assert.equal(row('closed')?.finalized, true);
  assert.equal(row('closed')?.canceled, false);
  assert.equal(row('cancel')?.canceled, true);
  assert.equal(row('cancel')?.finalized, false);
  for (const label of ['sent', 'lapsed']) {
    assert.equal(
      row(label)?.updated_at.getTime(),
      before.get(allocationId(label))?.updated_at.getTime(),
      `${label} matches the chain, so its row is not written`,
    );
  }
  for (const label of ['moved', 'closed', 'cancel']) {
    assert.ok(
      (row(label)?.updated_at.getTime() ?? 0) > (before.get(allocationId(label))?.updated_at.getTime() ?? 0),
      `${label} differs from the chain, so its row is written`,
    );
  }
});

test('two notices of one allocation in one batch', async () => {
  await seed([{ id: 'twice', inHours: 60 }]);
  // Queued by an earlier run for the expiry stored before the allocation was extended.
  await queueNotice('twice', hoursFromNow(30), 3);
  const documentsBefore = documents().size;

  const result = await runCli(['expiring-allocations', '--json'], env());

  assert.equal(result.code, 0, result.stdout);
  assert.equal(summaryOf(result).succeeded, 2);
  const notices = await pool.any(
    sql.type(noticeState)`
      SELECT allocation_id, expires_at, status, outcome, sent_at FROM allocation_expiry_notices ORDER BY expires_at`,
  );
  assert.deepEqual(
    notices.map((row) => row.outcome),
    ['superseded', 'created'],
  );
  assert.equal(documents().size, documentsBefore + 1);
  const stored = await pool.oneFirst(
    sql.type(
      z.object({ expires_at: z.date() }),
    )`SELECT expires_at FROM allocations WHERE id = ${allocationId('twice')}`,
  );
  assert.equal(stored.getTime(), notices[1]?.expires_at.getTime());
});

test('document written before a crash counts as sent', async () => {
  await seed([{ id: 'crashed', inHours: 40 }]);
  const dry = await runCli(['expiring-allocations', '--dry-run', '--json'], env());
  const documentId = String(dry.lines.find((line) => String(line.msg).startsWith('would '))?.document_id);
  assert.equal(documentId.startsWith(`expiry-${allocationId('crashed')}-`), true, documentId);
  assert.match(documentId, /-\d+-3d$/);
  // A run that wrote the document and died before recording it leaves this state behind.
  await fetch(`${elasticsearch.url}/${INDEX}/_create/${documentId}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ allocation_id: allocationId('crashed'), written_by: 'the crashed run' }),
  });
  const result = await runCli(['expiring-allocations', '--json'], env());
  assert.equal(result.code, 0, result.stdout);
  assert.equal(
    documents().get(documentId)?.written_by,
    'the crashed run',
    'the document was not written twice',
  );
  const outcome = await pool.oneFirst(sql.unsafe`SELECT outcome FROM allocation_expiry_notices`);
  assert.equal(outcome, 'already_sent');
});

test('mixed bulk item errors: 429 retried, 400 dead', async () => {
  await seed([
    { id: 'busy', inHours: 10 },
    { id: 'invalid', inHours: 11 },
    { id: 'fine', inHours: 12 },
  ]);
  const dry = await runCli(['expiring-allocations', '--dry-run', '--json'], env());
  const ids = new Map(
    dry.lines
      .filter((line) => String(line.msg).startsWith('would '))
      .map((line) => [String(line.task_id).replace('allocation ', ''), String(line.document_id)]),
  );
  const documentOf = (label: string) => ids.get(allocationId(label)) as string;
  elasticsearch.failNextItem(documentOf('busy'), { status: 429 });
  elasticsearch.failNextItem(documentOf('invalid'), {
    status: 400,
    reason: 'failed to parse field [expires_at]',
  });
  const result = await runCli(['expiring-allocations', '--json'], env());
  assert.equal(result.code, 4, 'a dead notice needs attention');
  const summary = summaryOf(result);
  assert.equal(summary.succeeded, 1);
  assert.equal(summary.retried, 1);
  assert.equal(summary.dead, 1);
  const rows = await pool.any(
    sql.type(z.object({ allocation_id: z.string(), status: z.string(), last_error: z.string().nullable() }))`
      SELECT allocation_id, status, last_error FROM allocation_expiry_notices ORDER BY allocation_id`,
  );
  const byId = new Map(rows.map((row) => [row.allocation_id, row]));
  const state = (label: string) => byId.get(allocationId(label));
  assert.equal(state('busy')?.status, 'pending');
  assert.equal(state('invalid')?.status, 'dead');
  assert.match(String(state('invalid')?.last_error), /failed to parse field \[expires_at\]/);
  assert.equal(state('fine')?.status, 'succeeded');
});

test('dry run writes nothing anywhere', async () => {
  await seed([{ id: 'dry', inHours: 20 }]);
  const requestsBefore = elasticsearch.requestCount;
  const result = await runCli(['expiring-allocations', '--dry-run', '--json'], env());
  assert.equal(result.code, 0, result.stderr);
  const plan = result.lines.filter((line) => String(line.msg).startsWith('would '));
  assert.equal(plan.length, 1);
  assert.match(String(plan[0]?.msg), /Your allocation expires in 1 day/);
  assert.equal(elasticsearch.requestCount, requestsBefore, 'no request to Elasticsearch');
  assert.equal(await pool.oneFirst(sql.unsafe`SELECT count(*) FROM allocation_expiry_notices`), 0n);
  assert.equal(await pool.oneFirst(sql.unsafe`SELECT count(*) FROM zbox_runs`), 0n);
});

test('days left rounds up and the message is singular for one', () => {
  const now = new Date('2026-01-01T00:00:00Z');
  assert.equal(daysLeft(new Date('2026-01-01T20:00:00Z'), now), 1);
  assert.equal(daysLeft(new Date('2026-01-03T00:00:01Z'), now), 3);
  assert.equal(daysLeft(new Date('2026-01-08T00:00:00Z'), now), 7);
  assert.equal(expiryMessage(1), 'Your allocation expires in 1 day');
  assert.equal(expiryMessage(3), 'Your allocation expires in 3 days');
});

test('cycle with nothing due calls no dependency', async () => {
  await seed([{ id: 'far-away', inHours: 90 * 24 }]);
  const chainRequests = network.requests.length;
  const elasticsearchRequests = elasticsearch.requestCount;

  // With the block worker alone, reaching the sharders starts with a request for the network.
  const result = await runCli(
    ['expiring-allocations', '--json'],
    env({ ZUS_SHARDERS: '', ZUS_BLOCK_WORKER: network.blockWorkerUrl }),
  );

  assert.equal(result.code, 0, result.stderr);
  assert.equal(summaryOf(result).claimed, 0);
  assert.equal(network.requests.length, chainRequests, 'no request to the block worker or the sharders');
  assert.equal(elasticsearch.requestCount, elasticsearchRequests, 'no request to Elasticsearch');
});
