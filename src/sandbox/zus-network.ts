/**
 * Loopback fake of a whole Züs network: one block worker, N miners and N sharders. The miners check
 * and pool signed transactions as a real miner does. The sharders serve the resulting ledger
 * (confirmations, balances, rounds, blocks) and the storage smart contract's reads. Everything
 * listens on 127.0.0.1 with ephemeral ports. Tests pass every fixture in, because this module reads no files.
 *
 * The rules live in ./zus/: chain.ts (submission and execution), storage.ts (the storage smart
 * contract), nodes.ts (routes and node behaviours).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import { Chain, type ChainSettings, DEFAULT_CHAIN_SETTINGS, type TransactionRecord } from './zus/chain.js';
import type { FeeSettings } from './zus/config.js';
import type { SignatureScheme } from './zus/crypto.js';
import { sha3Hex } from './zus/crypto.js';
import { listen, stop } from './zus/http.js';
import {
  changeBehaviour,
  type FakeAllocationBody,
  type FakeNode,
  handleBlockWorkerRequest,
  handleMinerRequest,
  handleSharderRequest,
  type MinerBehaviour,
  type NodesState,
  type SharderBehaviour,
  startNode,
  stopNode,
  type ZusRequestRecord,
} from './zus/nodes.js';
import { type AuthTicketMessage, type FakeBlobberInput, StorageContract } from './zus/storage.js';

export { MAIN_CHAIN_ID, type TransactionRecord, type TransactionState } from './zus/chain.js';
export { MINER_SC_ADDRESS, STORAGE_SC_ADDRESS } from './zus/config.js';
export type { SignatureScheme } from './zus/crypto.js';
export type {
  FakeAllocationBody,
  MinerBehaviour,
  SharderBehaviour,
  ZusRequestRecord,
} from './zus/nodes.js';
export type { AuthTicketMessage, FakeBlobberInput } from './zus/storage.js';

export interface ZusNetworkOptions {
  sharders: number;
  /** Number of miners that accept transactions (default 3). */
  miners?: number;
  /** The storage-config `fields` map, with string values as on the chain. */
  storageConfigFields?: Record<string, string>;
  allocations?: FakeAllocationBody[];
  /** Miner URLs that the block worker lists instead of this fake's own miners. */
  minerUrls?: string[];
  /** Delay of each response from a `slow` sharder or miner, in milliseconds (default 60 s). */
  slowMs?: number;
  /** Chain id the miners accept (default: mainnet's). */
  chainId?: string;
  /** Signature scheme of the network (default `bls0chain`); `setClientSignatureScheme` overrides it per client. */
  signatureScheme?: SignatureScheme;
  /** Seconds a transaction's creation_date may differ from the chain clock (default 600). */
  txnTimeoutSeconds?: number;
  /** How many nonces past the state nonce a miner accepts (default 10). */
  futureNonce?: number;
  /** Maximum transaction_data size in bytes (default 98304). */
  maxPayloadBytes?: number;
  /** Whether miners demand and charge fees (default true). */
  feesEnabled?: boolean;
  /** Lower bound of every non-exempt fee, in SAS (default 0). */
  minTxnFee?: bigint | number;
  /** Fee settings the fee table is derived from (default: the 0chain repository's config). */
  feeSettings?: FeeSettings;
  /** Fee table in SAS served and enforced as given, instead of the derived one. */
  feeTable?: Record<string, Record<string, bigint | number>>;
  /** Fixed start of the chain clock in unix seconds; by default the clock follows the system time. */
  clockStart?: number;
  /** Round of the first block (default 1). */
  startRound?: number;
  /** `transaction_status` of a failed smart-contract call: 2 (today's chain, default) or 3 (older nodes). */
  executionErrorStatus?: 2 | 3;
  /** Message a blobber auth ticket signs (default `owner-round`, the rule after the "hermes" fork). */
  authTicketMessage?: AuthTicketMessage;
  /** Balances in SAS to start with. */
  balances?: Record<string, bigint | number>;
  blobbers?: FakeBlobberInput[];
}

export interface ZusNetworkFake {
  blockWorkerUrl: string;
  sharderUrls: string[];
  minerUrls: string[];
  chainId: string;
  /** Every request in arrival order. */
  readonly requests: readonly ZusRequestRecord[];
  setStorageConfigFields(fields: Record<string, string>): void;
  upsertAllocation(allocation: FakeAllocationBody): void;
  removeAllocation(id: string): void;
  /** Changes one sharder's behaviour and resolves once a `down` sharder has stopped or restarted listening. */
  setSharderBehaviour(index: number, behaviour: SharderBehaviour): Promise<void>;
  /** Changes one miner's behaviour and resolves once a `down` miner has stopped or restarted listening. */
  setMinerBehaviour(index: number, behaviour: MinerBehaviour): Promise<void>;
  /** Makes the next `count` transaction puts (to any miner) run normally, then close the connection without a response. */
  dropNextPutResponse(count?: number): void;
  /** The chain clock in unix seconds: the latest finalized block's creation_date. */
  now(): number;
  /** Moves the chain clock; pool transactions that leave the acceptance window are dropped. */
  advanceClock(seconds: number): void;
  /** Finalizes empty blocks, so the round moves on without transactions. */
  advanceRounds(count: number): void;
  currentRound(): number;
  /** Stops applying transactions: accepted ones wait in the pool until `resumeBlocks`. */
  pauseBlocks(): void;
  /** Applies what waits in the pool and goes back to applying each transaction as it arrives. */
  resumeBlocks(): Promise<void>;
  /** Sets a client's balance in SAS, creating its state on the chain. */
  setBalance(clientId: string, sas: bigint | number): void;
  /** Balance in SAS, or 0n for a client the chain has no state for. */
  getBalance(clientId: string): bigint;
  getNonce(clientId: string): number;
  setClientSignatureScheme(clientId: string, scheme: SignatureScheme): void;
  /** Adds or changes a blobber; unset fields keep their previous or default values. */
  upsertBlobber(blobber: FakeBlobberInput): void;
  /** Every accepted transaction with its fate, in order of first acceptance. */
  transactions(): TransactionRecord[];
  /** The write pool of a ledger allocation in SAS, or undefined for an unknown one. */
  writePool(allocationId: string): bigint | undefined;
  close(): Promise<void>;
}

/** Starts the block worker, the miners and `options.sharders` sharders on 127.0.0.1 with ephemeral ports. */
export async function startZusNetwork(options: ZusNetworkOptions): Promise<ZusNetworkFake> {
  if (!Number.isInteger(options.sharders) || options.sharders < 1) {
    throw new Error(`invalid sharder count ${options.sharders}: expected an integer of at least 1`);
  }
  const minerCount = options.miners ?? 3;
  if (!Number.isInteger(minerCount) || minerCount < 1) {
    throw new Error(`invalid miner count ${minerCount}: expected an integer of at least 1`);
  }

  const storageConfig = { fields: { ...(options.storageConfigFields ?? {}) } };
  const rawAllocations = new Map((options.allocations ?? []).map((item) => [item.id, item]));
  const minerIds = Array.from({ length: minerCount }, (_, index) => sha3Hex(`fake miner ${index}`));
  let chainRef: Chain | undefined;
  const now = () => chainRef?.now() ?? Math.floor(Date.now() / 1000);
  const storage = new StorageContract(
    () => storageConfig.fields,
    now,
    options.authTicketMessage ?? 'owner-round',
    rawAllocations,
  );
  const chain = new Chain(chainSettings(options), storage, () => storageConfig.fields, minerIds);
  chainRef = chain;

  for (const [clientId, balance] of Object.entries(options.balances ?? {})) {
    chain.setBalance(clientId, BigInt(balance));
  }
  for (const blobber of options.blobbers ?? []) {
    storage.upsertBlobber(blobber, chain.currentRound());
  }

  const state: NodesState = {
    chain,
    storage,
    storageConfigFields: storageConfig.fields,
    rawAllocations,
    requests: [],
    slowMs: options.slowMs ?? 60_000,
    closing: false,
    dropPutResponses: 0,
    timers: new Set(),
  };

  const sharders: FakeNode<SharderBehaviour>[] = [];
  for (let index = 0; index < options.sharders; index += 1) {
    sharders.push(
      await startNode<SharderBehaviour>('ok', (node, request, response) =>
        handleSharderRequest(state, node, index, request, response),
      ),
    );
  }
  const miners: FakeNode<MinerBehaviour>[] = [];
  for (let index = 0; index < minerCount; index += 1) {
    const minerId = minerIds[index] ?? '';
    miners.push(
      await startNode<MinerBehaviour>('ok', (node, request, response) =>
        handleMinerRequest(state, node, index, minerId, request, response),
      ),
    );
  }
  const sharderUrls = sharders.map((node) => `http://127.0.0.1:${node.port}`);
  const minerUrls = miners.map((node) => `http://127.0.0.1:${node.port}`);

  const blockWorker = createServer((request: IncomingMessage, response: ServerResponse) =>
    handleBlockWorkerRequest(
      state,
      () => ({ miners: options.minerUrls ?? minerUrls, sharders: sharderUrls }),
      request,
      response,
    ),
  );
  const blockWorkerPort = await listen(blockWorker, 0);

  return {
    blockWorkerUrl: `http://127.0.0.1:${blockWorkerPort}/dns`,
    sharderUrls,
    minerUrls,
    chainId: chain.settings.chainId,
    requests: state.requests,
    setStorageConfigFields: (fields) => {
      // The nodes and the contract read the same object, so it is replaced in place.
      for (const key of Object.keys(state.storageConfigFields)) {
        delete state.storageConfigFields[key];
      }
      Object.assign(state.storageConfigFields, fields);
    },
    upsertAllocation: (allocation) => {
      storage.allocations.delete(allocation.id);
      rawAllocations.set(allocation.id, allocation);
    },
    removeAllocation: (id) => {
      storage.allocations.delete(id);
      rawAllocations.delete(id);
    },
    setSharderBehaviour: (index, behaviour) => changeBehaviour('sharder', sharders, index, behaviour),
    setMinerBehaviour: (index, behaviour) => changeBehaviour('miner', miners, index, behaviour),
    dropNextPutResponse: (count = 1) => {
      state.dropPutResponses += count;
    },
    now: () => chain.now(),
    advanceClock: (seconds) => chain.advanceClock(seconds),
    advanceRounds: (count) => chain.advanceRounds(count),
    currentRound: () => chain.currentRound(),
    pauseBlocks: () => chain.pauseBlocks(),
    resumeBlocks: () => chain.resumeBlocks(),
    setBalance: (clientId, sas) => chain.setBalance(clientId, BigInt(sas)),
    getBalance: (clientId) => chain.balanceOf(clientId) ?? 0n,
    getNonce: (clientId) => chain.nonceOf(clientId),
    setClientSignatureScheme: (clientId, scheme) => chain.setClientScheme(clientId, scheme),
    upsertBlobber: (blobber) => {
      storage.upsertBlobber(blobber, chain.currentRound());
    },
    transactions: () => chain.transactions(),
    writePool: (allocationId) => storage.allocations.get(allocationId)?.writePool,
    close: async () => {
      state.closing = true;
      for (const timer of state.timers) {
        clearTimeout(timer);
      }
      await Promise.all([...sharders.map(stopNode), ...miners.map(stopNode), stop(blockWorker)]);
    },
  };
}

function chainSettings(options: ZusNetworkOptions): ChainSettings {
  const feeTable =
    options.feeTable === undefined
      ? undefined
      : Object.fromEntries(
          Object.entries(options.feeTable).map(([sc, fees]) => [
            sc,
            Object.fromEntries(Object.entries(fees).map(([name, fee]) => [name, BigInt(fee)])),
          ]),
        );
  return {
    chainId: options.chainId ?? DEFAULT_CHAIN_SETTINGS.chainId,
    txnTimeoutSeconds: options.txnTimeoutSeconds ?? DEFAULT_CHAIN_SETTINGS.txnTimeoutSeconds,
    futureNonce: options.futureNonce ?? DEFAULT_CHAIN_SETTINGS.futureNonce,
    maxPayloadBytes: options.maxPayloadBytes ?? DEFAULT_CHAIN_SETTINGS.maxPayloadBytes,
    feesEnabled: options.feesEnabled ?? DEFAULT_CHAIN_SETTINGS.feesEnabled,
    minTxnFee: BigInt(options.minTxnFee ?? DEFAULT_CHAIN_SETTINGS.minTxnFee),
    feeSettings: options.feeSettings ?? DEFAULT_CHAIN_SETTINGS.feeSettings,
    feeTable,
    defaultScheme: options.signatureScheme ?? DEFAULT_CHAIN_SETTINGS.defaultScheme,
    executionErrorStatus: options.executionErrorStatus ?? DEFAULT_CHAIN_SETTINGS.executionErrorStatus,
    clockStart: options.clockStart,
    startRound: options.startRound ?? DEFAULT_CHAIN_SETTINGS.startRound,
  };
}

/**
 * Builds an allocation response in today's shape (storageAllocationBlobbers) with plausible
 * defaults: 2 data and 2 parity shards, 2 GiB, one year from now, no blobbers.
 */
export function fakeAllocationBody(input: {
  id: string;
  ownerId: string;
  dataShards?: number;
  parityShards?: number;
  sizeBytes?: number;
  expiresAt?: Date;
  finalized?: boolean;
  canceled?: boolean;
  thirdPartyExtendable?: boolean;
}): FakeAllocationBody {
  const expiresAt = input.expiresAt ?? new Date(Date.now() + 365 * 24 * 3600 * 1000);
  const expirationSeconds = Math.floor(expiresAt.getTime() / 1000);
  return {
    id: input.id,
    tx: input.id,
    data_shards: input.dataShards ?? 2,
    parity_shards: input.parityShards ?? 2,
    size: input.sizeBytes ?? 2 * 1024 ** 3,
    expiration_date: expirationSeconds,
    owner_id: input.ownerId,
    owner_public_key: '',
    stats: { used_size: 0, num_of_writes: 0, num_of_reads: 0, total_challenges: 0, num_open_challenges: 0 },
    blobber_details: [],
    blobbers: [],
    third_party_extendable: input.thirdPartyExtendable ?? false,
    file_options: 63,
    write_pool: 0,
    read_price_range: { min: 0, max: 0 },
    write_price_range: { min: 0, max: 250_000_000 },
    start_time: expirationSeconds - 365 * 24 * 3600,
    finalized: input.finalized ?? false,
    canceled: input.canceled ?? false,
    // Go encodes time.Duration as integer nanoseconds: 8760 h.
    time_unit: 8760 * 3600 * 1_000_000_000,
  };
}
