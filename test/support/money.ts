import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateMnemonic } from '@scure/bip39';
import { wordlist } from '@scure/bip39/wordlists/english.js';
import { type Wallet, walletFromMnemonic } from '../../src/core/zus/wallet.js';

/** A wallet written to a file the CLI reads through ZBOX_TEAM_WALLET or ZBOX_OPERATOR_WALLET. */
export interface WalletFile {
  wallet: Wallet;
  path: string;
}

/** A temporary folder of wallet files, removed by `remove()`. */
export function walletFolder() {
  const folder = mkdtempSync(join(tmpdir(), 'zbox-wallets-'));
  return {
    async create(name: string): Promise<WalletFile> {
      const mnemonic = generateMnemonic(wordlist, 256);
      const wallet = await walletFromMnemonic(mnemonic, 'bls0chain');
      const path = join(folder, `${name}.json`);
      writeFileSync(path, JSON.stringify({ mnemonics: mnemonic }));
      return { wallet, path };
    },
    remove() {
      rmSync(folder, { recursive: true, force: true });
    },
  };
}
