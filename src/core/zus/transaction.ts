import { createHash } from 'node:crypto';
import { STORAGE_SC_ADDRESS } from './storage-config.js';

/**
 * Züs transactions: the JSON a miner accepts, its hash and its signature.
 *
 * hash = sha3_256_hex("creation_date:nonce:client_id:to_client_id:value:sha3_256_hex(data)"),
 * with decimal integers and NIST SHA3-256 (gosdk core/transaction/entity.go ComputeHashData).
 * The fee is not part of the hash. The signature covers the 32 raw bytes of the hash.
 */

/** Transaction types this project sends (gosdk core/transaction/type.go). */
export const TXN_TYPE_SEND = 0;
export const TXN_TYPE_SMART_CONTRACT = 1000;

/** Signer of a transaction: the wallet's identity and its signing function. The key stays inside. */
export interface TransactionSigner {
  clientId: string;
  publicKey: string;
  sign(hashHex: string): string;
}

/** The transaction as sent to `POST /v1/transaction/put`; amounts are SAS. */
export interface SignedTransaction {
  hash: string;
  version: '1.0';
  client_id: string;
  public_key: string;
  to_client_id: string;
  chain_id: string;
  transaction_data: string;
  transaction_value: bigint;
  signature: string;
  creation_date: number;
  transaction_fee: bigint;
  transaction_nonce: number;
  transaction_type: number;
}

export interface UnsignedTransaction {
  toClientId: string;
  chainId: string;
  data: string;
  valueSas: bigint;
  feeSas: bigint;
  nonce: number;
  type: number;
  /** Unix seconds; the miners accept it within their acceptance window of their own clock. */
  creationDate: number;
}

export function sha3Hex(text: string | Buffer): string {
  return createHash('sha3-256').update(text).digest('hex');
}

export function transactionHash(
  fields: Pick<UnsignedTransaction, 'creationDate' | 'nonce' | 'toClientId' | 'valueSas' | 'data'> & {
    clientId: string;
  },
): string {
  const dataHash = sha3Hex(fields.data);
  return sha3Hex(
    `${fields.creationDate}:${fields.nonce}:${fields.clientId}:${fields.toClientId}:${fields.valueSas}:${dataHash}`,
  );
}

/** Builds, hashes and signs a transaction. */
export function signTransaction(signer: TransactionSigner, unsigned: UnsignedTransaction): SignedTransaction {
  if (unsigned.valueSas < 0n || unsigned.feeSas < 0n) {
    throw new Error(
      `transaction value and fee must not be negative (value ${unsigned.valueSas}, fee ${unsigned.feeSas})`,
    );
  }
  const hash = transactionHash({ ...unsigned, clientId: signer.clientId });
  return {
    hash,
    version: '1.0',
    client_id: signer.clientId,
    public_key: signer.publicKey,
    to_client_id: unsigned.toClientId,
    chain_id: unsigned.chainId,
    transaction_data: unsigned.data,
    transaction_value: unsigned.valueSas,
    signature: signer.sign(hash),
    creation_date: unsigned.creationDate,
    transaction_fee: unsigned.feeSas,
    transaction_nonce: unsigned.nonce,
    transaction_type: unsigned.type,
  };
}

/** Data of a storage smart-contract call: `{"name": <function>, "input": <object>}`. */
export function smartContractData(name: string, input: unknown): string {
  return jsonWithBigints({ name, input });
}

/** Data of a send: the chain does not parse it for type 0; gosdk puts a transfer note here. */
export function sendData(note: string): string {
  return JSON.stringify({ name: 'transfer', input: { note } });
}

/**
 * The JSON body for a miner. Amounts are bigint in memory and plain JSON integers on the wire,
 * written as digits so that values above 2^53 keep every digit.
 */
export function transactionJson(transaction: SignedTransaction): string {
  return jsonWithBigints(transaction);
}

/** JSON text in which every bigint is a plain integer with all its digits. */
export function jsonWithBigints(value: unknown): string {
  const text = JSON.stringify(value, (_key, item) =>
    typeof item === 'bigint' ? `__bigint__${item.toString()}` : item,
  );
  return text.replace(/"__bigint__(-?\d+)"/g, '$1');
}

/** Reads a transaction back from the JSON `transactionJson` wrote, amounts exact. */
export function parseStoredTransaction(text: string): SignedTransaction {
  // Quote the two amounts before parsing, because JSON.parse would round integers above 2^53.
  const quoted = text.replace(/"(transaction_value|transaction_fee)":(\d+)/g, '"$1":"$2"');
  const raw = JSON.parse(quoted) as Record<string, unknown>;
  const amount = (field: string) => {
    const item = raw[field];
    if (typeof item !== 'string' || !/^\d+$/.test(item)) {
      throw new Error(`stored transaction: ${field} is missing or not an integer`);
    }
    return BigInt(item);
  };
  return {
    ...(raw as unknown as SignedTransaction),
    transaction_value: amount('transaction_value'),
    transaction_fee: amount('transaction_fee'),
  };
}

export { STORAGE_SC_ADDRESS };
