import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { generateMnemonic } from '@scure/bip39';
import { wordlist } from '@scure/bip39/wordlists/english.js';
import { walletFromMnemonic } from '../src/core/zus/wallet.js';
import { startZusNetwork, type ZusNetworkFake } from '../src/sandbox/zus-network.js';
import { runCli } from './support/cli.js';

let network: ZusNetworkFake;
let folder: string;

before(async () => {
  network = await startZusNetwork({ sharders: 2 });
  folder = mkdtempSync(join(tmpdir(), 'zbox-wallet-'));
});

after(async () => {
  await network.close();
  rmSync(folder, { recursive: true, force: true });
});

test('wallet prints identity, balance and next nonce only', async () => {
  const mnemonic = generateMnemonic(wordlist, 256);
  const wallet = await walletFromMnemonic(mnemonic, 'bls0chain');
  network.setBalance(wallet.clientId, 12_500_000_000n);
  const file = join(folder, 'wallet.json');
  writeFileSync(file, JSON.stringify({ mnemonics: mnemonic, version: '1.0' }));

  const result = await runCli(['wallet', '--json'], {
    ZBOX_TEAM_WALLET: file,
    ZUS_SHARDERS: network.sharderUrls.join(','),
  });
  assert.equal(result.code, 0, result.stderr);
  const report = result.lines.at(-1) ?? {};
  assert.equal(report.client_id, wallet.clientId);
  assert.equal(report.public_key, wallet.publicKey);
  assert.equal(report.balance_sas, '12500000000');
  assert.equal(report.balance_zcn, '1.25');
  assert.equal(report.next_nonce, 1);
  const output = result.stdout + result.stderr;
  const words = mnemonic.split(' ');
  for (let index = 0; index + 1 < words.length; index++) {
    assert.ok(
      !output.includes(`${words[index]} ${words[index + 1]}`),
      'no two mnemonic words in a row are printed',
    );
  }
});

test('wallet without ZBOX_TEAM_WALLET exits 2', async () => {
  const result = await runCli(['wallet', '--json'], { ZUS_SHARDERS: network.sharderUrls.join(',') });
  assert.equal(result.code, 2);
  assert.match(result.stderr, /ZBOX_TEAM_WALLET: missing \(mount the team wallet secret/);
});

test('wallet file that is not JSON exits 2', async () => {
  const file = join(folder, 'broken.json');
  writeFileSync(file, 'this is not json');
  const result = await runCli(['wallet', '--json'], {
    ZBOX_TEAM_WALLET: file,
    ZUS_SHARDERS: network.sharderUrls.join(','),
  });
  assert.equal(result.code, 2);
  assert.match(result.stderr, /ZBOX_TEAM_WALLET: .*not valid JSON/);
});
