import { createHash } from 'node:crypto';
import { generateMnemonic } from '@scure/bip39';
import { wordlist } from '@scure/bip39/wordlists/english.js';
import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { walletFromMnemonic } from '../core/zus/wallet.js';
import type { FakeBlobberStorage } from '../sandbox/blobber-storage.js';
import type { FakeBlobbers } from '../sandbox/blobbers.js';
import type { OpenAIFake } from '../sandbox/openai.js';
import { fakeAllocationBody, type ZusNetworkFake } from '../sandbox/zus-network.js';

/**
 * Sample data for the demo. It registers open and restricted blobbers on the simulated chain and
 * adds two paid Stripe allocation tasks (one with restricted blobbers), two funding tasks (one
 * user has two devices), three allocations expiring within the notice windows, a ticket request
 * and old team-wallet spending rows.
 */

const GIB = 1n << 30n;
const HOUR = 3_600_000;

function demoId(label: string): string {
  return createHash('sha256').update(`zbox-demo:${label}`).digest('hex');
}

export async function seedDemoData(deps: {
  pool: DatabasePool;
  network: ZusNetworkFake;
  blobbers: FakeBlobbers;
  team: string;
}): Promise<void> {
  const { pool, network, blobbers } = deps;
  const open = Array.from({ length: 6 }, (_, index) => demoId(`blobber-${index}`));
  open.forEach((id, index) => {
    network.upsertBlobber({
      id,
      url: `http://127.0.0.1:${7100 + index}`,
      writePrice: 20_000_000n * BigInt(index + 1),
    });
  });
  for (const blobber of blobbers.blobbers) {
    network.upsertBlobber({
      id: blobber.id,
      url: blobber.url,
      isRestricted: true,
      publicKey: blobber.publicKey,
      writePrice: 30_000_000n,
    });
  }

  const alice = await walletFromMnemonic(generateMnemonic(wordlist, 256), 'bls0chain');
  const bob = await walletFromMnemonic(generateMnemonic(wordlist, 256), 'bls0chain');
  const restricted = blobbers.blobbers.map((blobber) => blobber.id);
  await pool.query(sql.unsafe`
    INSERT INTO stripe_allocation_tasks (stripe_payment_id, user_id, owner_client_id, owner_public_key, size_bytes,
                                         data_shards, parity_shards, preferred_blobbers, amount_paid_cents, currency)
    VALUES ('pi_demo_alice', 'alice', ${alice.clientId}, ${alice.publicKey}, ${10n * GIB}, 2, 2,
            ${sql.array([...restricted, ...open.slice(0, 2)], 'text')}, 1999, 'usd'),
           ('pi_demo_bob', 'bob', ${bob.clientId}, ${bob.publicKey}, ${4n * GIB}, 2, 1, '{}', 999, 'usd')`);
  await pool.query(sql.unsafe`
    INSERT INTO restricted_blobber_tickets (blobber_id, client_id) VALUES (${restricted[0] as string}, ${bob.clientId})`);

  await pool.query(sql.unsafe`
    INSERT INTO funding_tasks (user_id, recipient_client_id, amount_sas, reason)
    VALUES ('alice', ${alice.clientId}, 15000000000, 'welcome grant'),
           ('bob', ${bob.clientId}, 5000000000, 'referral bonus')`);
  await pool.query(sql.unsafe`
    INSERT INTO user_devices (user_id, fcm_token) VALUES ('alice', 'demo-token-alice-phone'), ('alice', 'demo-token-alice-tablet')`);

  for (const [label, hours] of [
    ['soon', 20],
    ['days', 60],
    ['week', 150],
  ] as const) {
    const id = demoId(`allocation-${label}`);
    const expiresAt = new Date(Math.floor((Date.now() + hours * HOUR) / 1000) * 1000);
    network.upsertAllocation(fakeAllocationBody({ id, ownerId: alice.clientId, expiresAt }));
    await pool.query(sql.unsafe`
      INSERT INTO allocations (id, owner_client_id, user_id, size_bytes, data_shards, parity_shards, expires_at)
      VALUES (${id}, ${alice.clientId}, 'alice', ${GIB}, 2, 2, ${expiresAt.toISOString()})`);
  }

  await pool.query(sql.unsafe`
    INSERT INTO team_wallet_spending (wallet_client_id, purpose, amount_sas, fee_sas, state, created_at)
    SELECT ${deps.team}, 'funding', 1000000000, 10000000, 'settled', now() - interval '120 days' - n * interval '1 hour'
    FROM generate_series(1, 40) AS n`);
}

/**
 * Adds a batch task over two shared files (a text file and a small PNG) served by the share
 * blobbers, and old OpenAI files of several purposes for delete-openai-files.
 */
export async function seedDemoBatch(deps: {
  pool: DatabasePool;
  storage: FakeBlobberStorage;
  openai: OpenAIFake;
}) {
  const { pool, storage, openai } = deps;
  const png = Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    Buffer.alloc(64, 3),
  ]);
  const files: Array<[string, Uint8Array]> = [
    [
      '/reports/q3-summary.txt',
      Buffer.from('Revenue grew 12% in the third quarter; storage usage doubled.\n'),
    ],
    ['/photos/diagram.png', png],
  ];
  const ids: bigint[] = [];
  for (const [path, content] of files) {
    const stored = storage.addFile({ path, content });
    const ticket = storage.shareFile(stored.lookupHash);
    const id = await pool.oneFirst(sql.type(z.object({ id: z.bigint() }))`
      INSERT INTO share_infos (user_id, auth_ticket, lookup_hash, file_name)
      VALUES ('alice', ${ticket}, ${stored.lookupHash}, ${path}) RETURNING id`);
    ids.push(id);
  }
  await pool.query(sql.unsafe`
    INSERT INTO openai_batch_tasks (user_id, prompt, system_prompt, model, share_info_ids)
    VALUES ('alice', 'Summarise this file for a status report.', 'Answer in two sentences.', 'gpt-4o-mini',
            ${sql.array(ids, 'int8')})`);
  const now = Math.floor(Date.now() / 1000);
  for (const [index, purpose] of ['batch', 'batch_output', 'batch_output', 'assistants'].entries()) {
    openai.seedFile({ filename: `old-${index}.jsonl`, purpose, createdAt: now - 48 * 3600 });
  }
}
