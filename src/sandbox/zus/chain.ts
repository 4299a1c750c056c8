/**
 * The fake chain's ledger: client balances and nonces, the miners' transaction pool, blocks and
 * confirmations. Submission follows 0chain/0chain `chaincore/chain/handler.go` `PutTransaction` and
 * `chaincore/transaction/entity.go` in their order and with their error texts; execution follows
 * `chaincore/chain/state.go` `updateState`.
 */
import {
  buildFeeTable,
  DEFAULT_FEE_SETTINGS,
  type FeeSettings,
  MINER_SC_ADDRESS,
  maxBigInt,
  STORAGE_SC_ADDRESS,
} from './config.js';
import { isHash, type SignatureScheme, sha3Hex, verifySignature } from './crypto.js';
import { ChainError, invalidRequest } from './http.js';
import {
  GoDecodeError,
  isJsonObject,
  JsonSyntaxError,
  type JsonValue,
  parseJson,
  readGoStruct,
} from './json.js';
import { StorageCallError, type StorageContract } from './storage.js';

/** Mainnet chain id (0chain `config.MAIN_CHAIN`). */
export const MAIN_CHAIN_ID = '0afc093ffb509f059c55478bc1a60351cef7b4e9c008a53a6cc8241ca8617dfe';

const TXN_SEND = 0;
const TXN_DATA = 10;
const TXN_SMART_CONTRACT = 1000;

/** Functions whose transactions pay no fee (`transaction.exempt` in the repository's 0chain.yaml). */
const FEE_EXEMPT = new Set(['contributeMpk', 'shareSignsOrShares', 'wait', 'pour']);

/** `config.MaxTokenSupply`: 400 million ZCN in SAS. NOTE: value recalled from the chain config, not re-read. */
const MAX_TOKEN_SUPPLY = 400_000_000n * 10_000_000_000n;

export interface ChainSettings {
  chainId: string;
  /** Seconds a transaction's creation_date may differ from the chain clock (`transaction.timeout`). */
  txnTimeoutSeconds: number;
  /** How far past the state nonce a transaction may be (`transaction.future_nonce`). */
  futureNonce: number;
  /** Bytes of transaction_data accepted (`transaction.payload.max_size`). */
  maxPayloadBytes: number;
  feesEnabled: boolean;
  /** Lower bound of every non-exempt fee in SAS (`transaction.min_fee`). */
  minTxnFee: bigint;
  feeSettings: FeeSettings;
  /** Fee table served and enforced instead of the one derived from the storage config. */
  feeTable: Record<string, Record<string, bigint>> | undefined;
  defaultScheme: SignatureScheme;
  /** Status recorded for a smart-contract call that fails: 2 (today's chain) or 3 (older nodes). */
  executionErrorStatus: 2 | 3;
  /** Fixed start of the chain clock in unix seconds; without it the clock follows the system time. */
  clockStart: number | undefined;
  startRound: number;
}

export const DEFAULT_CHAIN_SETTINGS: ChainSettings = {
  chainId: MAIN_CHAIN_ID,
  txnTimeoutSeconds: 600,
  futureNonce: 10,
  maxPayloadBytes: 98_304,
  feesEnabled: true,
  minTxnFee: 0n,
  feeSettings: DEFAULT_FEE_SETTINGS,
  feeTable: undefined,
  defaultScheme: 'bls0chain',
  executionErrorStatus: 2,
  clockStart: undefined,
  startRound: 1,
};

interface ClientState {
  balance: bigint;
  nonce: number;
  txn: string;
  round: number;
}

/** A transaction as the miner decoded it, with the client id and chain id already filled in. */
interface Transaction {
  hash: string;
  version: string;
  clientId: string;
  publicKey: string;
  toClientId: string;
  chainId: string;
  transactionData: string;
  value: bigint;
  signature: string;
  creationDate: bigint;
  fee: bigint;
  nonce: bigint;
  type: bigint;
  output: string;
  outputHash: string;
  status: bigint;
  functionName: string | undefined;
  input: JsonValue;
}

/** State of a submitted transaction: waiting in the pool, or what became of it. */
export type TransactionState = 'pending' | 'applied' | 'failed' | 'dropped' | 'expired' | 'replaced';

/** One transaction in the ledger view tests read. */
export interface TransactionRecord {
  hash: string;
  clientId: string;
  toClientId: string;
  nonce: number;
  type: number;
  functionName: string | undefined;
  value: bigint;
  fee: bigint;
  state: TransactionState;
  /** `transaction_status` of its confirmation (1 success, 2 or 3 failed), or 0 without a confirmation. */
  transactionStatus: number;
  /** Output of its confirmation, or the reason a miner dropped it from the pool. */
  output: string;
  round: number | undefined;
  /** Times a miner accepted it (the same transaction sent to several miners or resent). */
  submissions: number;
  /** Times it changed the ledger: 0 or 1. */
  applied: number;
}

interface PoolEntry {
  transaction: Transaction;
  record: TransactionRecord;
  arrival: number;
  minerId: string;
}

interface Block {
  round: number;
  hash: string;
  previousHash: string;
  creationDate: number;
  minerId: string;
  randomSeed: bigint;
  stateChangesCount: number;
  merkleRoot: string;
  receiptRoot: string;
  stateHash: string;
  transactionCount: number;
}

interface Confirmation {
  block: Block;
  body: Record<string, unknown>;
}

/** Outcome of `POST /v1/transaction/put` that a miner turns into its response. */
export type SubmitResult =
  | { kind: 'http-error'; status: number; text: string }
  | { kind: 'chain-error'; error: ChainError }
  | { kind: 'accepted'; entity: Record<string, unknown> };

/** The ledger and the rules of one fake Züs chain. */
export class Chain {
  private readonly clients = new Map<string, ClientState>();
  private readonly schemes = new Map<string, SignatureScheme>();
  private readonly pool = new Map<string, PoolEntry>();
  private readonly records = new Map<string, TransactionRecord>();
  private readonly confirmations = new Map<string, Confirmation>();
  private readonly blocks: Block[] = [];
  /** Hash of the transaction being applied, which a duplicate must not put back into the pool. */
  private executing: string | undefined;
  private clockOffset = 0;
  private arrivals = 0;
  private paused = false;
  /** Serialises block production, which awaits signature checks of auth tickets. */
  private producing: Promise<void> = Promise.resolve();

  constructor(
    readonly settings: ChainSettings,
    private readonly storage: StorageContract,
    private readonly storageFields: () => Record<string, string>,
    readonly minerIds: readonly string[],
  ) {
    this.appendBlock(undefined, minerIds[0] ?? sha3Hex('miner'));
  }

  // --- clock and rounds ---

  /** Returns the chain clock in unix seconds. */
  now(): number {
    const base = this.settings.clockStart ?? Math.floor(Date.now() / 1000);
    return base + this.clockOffset;
  }

  /** Moves the chain clock and drops pool transactions that leave the acceptance window. */
  advanceClock(seconds: number): void {
    if (!Number.isFinite(seconds)) {
      throw new Error(`invalid clock step ${seconds}: expected a finite number of seconds`);
    }
    this.clockOffset += Math.trunc(seconds);
    this.dropExpired();
  }

  /** Finalizes `count` empty blocks, so the current round moves on without transactions. */
  advanceRounds(count: number): void {
    for (let index = 0; index < count; index += 1) {
      this.appendBlock(undefined, this.minerIds[0] ?? '');
    }
  }

  currentRound(): number {
    return this.lastBlock().round;
  }

  /** Summary of the latest finalized block; its creation_date is the chain clock. */
  latestFinalizedBlock(): Record<string, unknown> {
    const block = this.lastBlock();
    return {
      version: '1.0',
      creation_date: Math.max(this.now(), block.creationDate),
      hash: block.hash,
      miner_id: block.minerId,
      round: block.round,
      round_random_seed: block.randomSeed,
      state_changes_count: block.stateChangesCount,
      merkle_tree_root: block.merkleRoot,
      state_hash: block.stateHash,
      receipt_merkle_tree_root: block.receiptRoot,
      num_txns: block.transactionCount,
    };
  }

  // --- balances ---

  setBalance(clientId: string, balance: bigint): void {
    const state = this.clients.get(clientId) ?? {
      balance: 0n,
      nonce: 0,
      txn: '',
      round: this.currentRound(),
    };
    state.balance = balance;
    this.clients.set(clientId, state);
  }

  /** Balance in SAS, or undefined when the chain has no state for the client. */
  balanceOf(clientId: string): bigint | undefined {
    return this.clients.get(clientId)?.balance;
  }

  nonceOf(clientId: string): number {
    return this.clients.get(clientId)?.nonce ?? 0;
  }

  /** `GET /v1/client/get/balance` body, or undefined for "value not present". */
  balanceResponse(clientId: string): Record<string, unknown> | undefined {
    const state = this.clients.get(clientId);
    if (state === undefined) {
      return undefined;
    }
    return { txn: state.txn, round: state.round, balance: state.balance, nonce: state.nonce };
  }

  setClientScheme(clientId: string, scheme: SignatureScheme): void {
    this.schemes.set(clientId, scheme);
  }

  // --- ledger view ---

  transactions(): TransactionRecord[] {
    return [...this.records.values()].map((record) => ({ ...record }));
  }

  pauseBlocks(): void {
    this.paused = true;
  }

  async resumeBlocks(): Promise<void> {
    this.paused = false;
    await this.produceBlocks();
  }

  /** Returns the confirmation body of a transaction in a block, or undefined. */
  confirmation(hash: string): Record<string, unknown> | undefined {
    return this.confirmations.get(hash)?.body;
  }

  // --- fees ---

  feeTable(): Record<string, Record<string, bigint>> {
    return this.settings.feeTable ?? buildFeeTable(this.storageFields(), this.settings.feeSettings);
  }

  /**
   * Minimum fee of a transaction as `EstimateTransactionCostFee` computes it, or the error the
   * miner wraps as "could not get estimated txn cost". Exempt functions cost 0.
   * NOTE: the texts for an unknown smart contract or function are this fake's; the chain's were not read.
   */
  private estimateFee(transaction: Transaction): bigint | string {
    const table = this.feeTable();
    switch (Number(transaction.type)) {
      case TXN_SEND:
        return table.transfer?.transfer ?? 0n;
      case TXN_SMART_CONTRACT: {
        const name = transaction.functionName ?? '';
        if (FEE_EXEMPT.has(name)) {
          return 0n;
        }
        const contract = table[transaction.toClientId];
        if (contract === undefined) {
          return 'invalid smart contract address';
        }
        return contract[name] ?? `no cost found for function ${name}`;
      }
      case 2:
      case TXN_DATA:
      case 101:
      case 103:
        return 0n;
      default:
        return `invalid transaction type: ${transaction.type}`;
    }
  }

  /**
   * `GET /v1/estimate_txn_fee` (chain/handler.go `SuggestedFeeHandler`): the fee of the transaction
   * in the body, which must decode and carry a public key like a submitted one.
   */
  estimateFeeRequest(body: Buffer): bigint | ChainError {
    let transaction: Transaction;
    try {
      transaction = this.decodeTransaction(body.toString('utf8'));
    } catch (error) {
      if (error instanceof JsonSyntaxError || error instanceof GoDecodeError) {
        return new ChainError(error.message);
      }
      throw error;
    }
    if (transaction.publicKey === '') {
      return new ChainError('transaction missing public key');
    }
    if (!this.computeProperties(transaction)) {
      return new ChainError(
        Number(transaction.type) === TXN_SMART_CONTRACT && transaction.functionName === undefined
          ? 'invalid smart contract data'
          : 'mismatched public key and client ID',
      );
    }
    const fee = this.estimateFee(transaction);
    return typeof fee === 'string' ? new ChainError(fee) : fee;
  }

  // --- submission (miner) ---

  /**
   * Validates one `POST /v1/transaction/put` and puts the transaction into the pool. The checks run
   * in the chain's order: decoding and `ComputeProperties`, then `PutTransaction`.
   */
  async submit(contentType: string | undefined, body: Buffer, minerId: string): Promise<SubmitResult> {
    // datastore.ToJSONEntityReqResponse
    if (!(contentType ?? '').startsWith('application/json')) {
      return { kind: 'http-error', status: 400, text: 'Header Content-type=application/json not found' };
    }
    let transaction: Transaction;
    try {
      transaction = this.decodeTransaction(body.toString('utf8'));
    } catch (error) {
      if (error instanceof JsonSyntaxError || error instanceof GoDecodeError) {
        return { kind: 'http-error', status: 400, text: 'Error decoding json' };
      }
      throw error;
    }
    if (!this.computeProperties(transaction)) {
      return { kind: 'http-error', status: 400, text: 'Error computing properties' };
    }

    const problem = await this.validate(transaction);
    if (problem !== undefined) {
      return { kind: 'chain-error', error: problem };
    }

    const existing = this.pool.get(transaction.hash);
    const known = this.records.get(transaction.hash);
    if (existing !== undefined) {
      // The pool is keyed by hash, so the same transaction is stored once however often it comes.
      existing.record.submissions += 1;
    } else if (
      known !== undefined &&
      (this.executing === transaction.hash || this.confirmations.has(transaction.hash))
    ) {
      // A copy that passed the nonce check while the first one was being applied: the chain would
      // drop it from the pool as a past transaction, so it is counted and not pooled.
      known.submissions += 1;
    } else {
      const record = this.records.get(transaction.hash) ?? newRecord(transaction);
      record.submissions += 1;
      record.state = 'pending';
      this.records.set(transaction.hash, record);
      this.arrivals += 1;
      this.pool.set(transaction.hash, { transaction, record, arrival: this.arrivals, minerId });
    }
    const entity = transactionJson(transaction);
    if (!this.paused) {
      await this.produceBlocks();
    }
    return { kind: 'accepted', entity };
  }

  private decodeTransaction(text: string): Transaction {
    const value = parseJson(text);
    const reader = readGoStruct('transaction.Transaction', value);
    const version = reader.string('version');
    const hasCreationDate =
      isJsonObject(value) && value.creation_date !== undefined && value.creation_date !== null;
    return {
      hash: reader.string('hash'),
      // transaction.Provider sets the version and the creation date before the body is decoded.
      version: version === '' ? '1.0' : version,
      clientId: reader.string('client_id'),
      publicKey: reader.string('public_key'),
      toClientId: reader.string('to_client_id'),
      chainId: reader.string('chain_id'),
      transactionData: reader.string('transaction_data'),
      value: reader.integer('transaction_value', 'uint64'),
      signature: reader.string('signature'),
      creationDate: hasCreationDate ? reader.integer('creation_date', 'int64') : BigInt(this.now()),
      fee: reader.integer('transaction_fee', 'uint64'),
      nonce: reader.integer('transaction_nonce', 'int64'),
      type: reader.integer('transaction_type', 'int'),
      output: reader.string('transaction_output'),
      outputHash: reader.string('txn_output_hash'),
      status: reader.integer('transaction_status', 'int'),
      functionName: undefined,
      input: null,
    };
  }

  /**
   * `Transaction.ComputeProperties`: the default chain id, the smart-contract data of type-1000
   * transactions, and the client id, which must be the SHA3-256 of the public key's bytes.
   */
  private computeProperties(transaction: Transaction): boolean {
    if (transaction.chainId === '') {
      transaction.chainId = this.settings.chainId;
    }
    if (Number(transaction.type) === TXN_SMART_CONTRACT) {
      try {
        const data = parseJson(transaction.transactionData);
        transaction.functionName = readGoStruct('transaction.SmartContractData', data).string('name');
        transaction.input = isJsonObject(data) ? (data.input ?? null) : null;
      } catch {
        return false;
      }
    }
    if (transaction.publicKey === '') {
      return false;
    }
    if (!/^([0-9a-fA-F]{2})*$/.test(transaction.publicKey)) {
      return false;
    }
    const derived = sha3Hex(Buffer.from(transaction.publicKey, 'hex'));
    if (transaction.clientId === '') {
      transaction.clientId = derived;
      return true;
    }
    return transaction.clientId === derived;
  }

  /** chain/handler.go `PutTransaction` after decoding, in its order. Returns the rejection or undefined. */
  private async validate(transaction: Transaction): Promise<ChainError | undefined> {
    const timeProblem = await this.validateWithTime(transaction);
    if (timeProblem !== undefined) {
      return timeProblem;
    }
    if (transaction.value > MAX_TOKEN_SUPPLY) {
      return new ChainError('transaction value exceeds max token supply');
    }
    const payload = Buffer.byteLength(transaction.transactionData);
    if (this.settings.maxPayloadBytes > 0 && payload > this.settings.maxPayloadBytes) {
      return new ChainError(
        `transaction payload exceeds the max payload (${this.settings.maxPayloadBytes})`,
        'txn_exceed_max_payload',
      );
    }
    if (transaction.nonce <= 0n) {
      return new ChainError('invalid transaction nonce');
    }

    const state = this.clients.get(transaction.clientId);
    const nonce = BigInt(state?.nonce ?? 0);
    const balance = state?.balance ?? 0n;
    if (transaction.nonce <= nonce) {
      return new ChainError('invalid transaction nonce');
    }
    if (nonce + BigInt(this.settings.futureNonce) < transaction.nonce) {
      return new ChainError('invalid future transaction');
    }
    const nextInLine = nonce + 1n === transaction.nonce;
    if (nextInLine && Number(transaction.type) === TXN_SEND && balance < transaction.value) {
      return new ChainError('insufficient balance to send');
    }
    if (this.settings.feesEnabled) {
      const estimate = this.estimateFee(transaction);
      if (typeof estimate === 'string') {
        return new ChainError(`could not get estimated txn cost: ${estimate}`);
      }
      const minFee = maxBigInt(this.settings.minTxnFee, estimate);
      const exempt = transaction.transactionData !== '' && FEE_EXEMPT.has(transaction.functionName ?? '');
      if (!exempt && transaction.fee < minFee) {
        return new ChainError('insufficient transaction fee');
      }
      if (nextInLine && balance < transaction.fee) {
        return new ChainError('insufficient balance to pay fee');
      }
    }
    return undefined;
  }

  /** transaction/entity.go `Validate` and `ValidateWrtTimeForBlock` against the chain clock. */
  private async validateWithTime(transaction: Transaction): Promise<ChainError | undefined> {
    if (!isHash(transaction.toClientId)) {
      return new ChainError('invalid to client id');
    }
    if (transaction.chainId !== this.settings.chainId) {
      return new ChainError(`chain ${transaction.chainId} is not supported by this server`);
    }
    if (transaction.hash === '') {
      return invalidRequest('hash required for transaction');
    }
    const now = BigInt(this.now());
    const tolerance = BigInt(this.settings.txnTimeoutSeconds);
    if (transaction.creationDate < now - tolerance || transaction.creationDate > now + tolerance) {
      return invalidRequest(
        `Transaction creation time not within tolerance: ts=${now} txn.creation_date=${transaction.creationDate}`,
      );
    }
    if (transaction.clientId === transaction.toClientId) {
      return invalidRequest('from and to client should be different');
    }
    const hashData = [
      transaction.creationDate,
      transaction.nonce,
      transaction.clientId,
      transaction.toClientId,
      transaction.value,
      sha3Hex(transaction.transactionData),
    ].join(':');
    const computed = sha3Hex(hashData);
    if (transaction.hash !== computed) {
      return new ChainError(
        `The hash of the data doesn't match with the provided hash: ${transaction.hash} ${computed} ${hashData}`,
        'hash_mismatch',
      );
    }
    const scheme = this.schemes.get(transaction.clientId) ?? this.settings.defaultScheme;
    const check = await verifySignature(
      scheme,
      transaction.publicKey,
      transaction.signature,
      Buffer.from(transaction.hash, 'hex'),
    );
    if (check.kind === 'error') {
      return new ChainError(check.message);
    }
    if (check.kind === 'invalid') {
      return new ChainError('Invalid Signature', 'invalid_signature');
    }
    if (transaction.outputHash !== '') {
      const expected = sha3Hex(transaction.output);
      if (transaction.outputHash !== expected) {
        return new ChainError(
          `The hash of the output doesn't match with the provided hash: ${transaction.hash} ${transaction.outputHash} ${expected} ${transaction.output}`,
          'hash_mismatch',
        );
      }
    }
    return undefined;
  }

  // --- block production ---

  /**
   * Applies every pool transaction whose nonce is next for its client, one block each, until none
   * is left. A transaction that leaves the acceptance window while it waits is dropped first.
   */
  produceBlocks(): Promise<void> {
    const run = this.producing.then(() => this.produceReadyBlocks());
    this.producing = run.catch(() => undefined);
    return run;
  }

  private async produceReadyBlocks(): Promise<void> {
    for (;;) {
      this.dropExpired();
      const next = this.nextReady();
      if (next === undefined) {
        return;
      }
      await this.execute(next);
    }
  }

  /** Deletes pool transactions outside `timeout − 1` seconds of the clock, as the chain's pool cleanup does. */
  private dropExpired(): void {
    const now = this.now();
    const window = this.settings.txnTimeoutSeconds - 1;
    for (const [hash, entry] of this.pool) {
      const creationDate = Number(entry.transaction.creationDate);
      if (creationDate < now - window || creationDate > now + window) {
        this.pool.delete(hash);
        entry.record.state = 'expired';
        entry.record.output = `creation_date ${creationDate} left the acceptance window at chain time ${now}`;
      }
    }
  }

  /**
   * Picks the next transaction to apply: of those whose nonce is next for their client, the one that
   * arrived first. Of two transactions with one nonce the higher fee wins, as the pool orders by fee.
   */
  private nextReady(): PoolEntry | undefined {
    const bestPerClient = new Map<string, PoolEntry>();
    for (const entry of this.pool.values()) {
      const { clientId, nonce, fee } = entry.transaction;
      if (nonce !== BigInt(this.nonceOf(clientId) + 1)) {
        continue;
      }
      const current = bestPerClient.get(clientId);
      const better =
        current === undefined ||
        fee > current.transaction.fee ||
        (fee === current.transaction.fee && entry.arrival < current.arrival);
      if (better) {
        bestPerClient.set(clientId, entry);
      }
    }
    let next: PoolEntry | undefined;
    for (const entry of bestPerClient.values()) {
      if (next === undefined || entry.arrival < next.arrival) {
        next = entry;
      }
    }
    return next;
  }

  /** Takes a transaction out of the pool and applies it. */
  private async execute(entry: PoolEntry): Promise<void> {
    const { transaction } = entry;
    this.pool.delete(transaction.hash);
    this.executing = transaction.hash;
    try {
      await this.apply(entry);
    } finally {
      this.executing = undefined;
    }
  }

  /** Applies one transaction as `updateState` does: a block and a confirmation, or a drop from the pool. */
  private async apply(entry: PoolEntry): Promise<void> {
    const { transaction, record } = entry;
    const sender = this.clients.get(transaction.clientId);
    const balance = sender?.balance ?? 0n;
    const round = this.currentRound() + 1;
    const fee = this.settings.feesEnabled ? transaction.fee : 0n;

    let status = 1;
    let output = '';
    let spent = 0n;
    let credit: { clientId: string; amount: bigint } | undefined;
    const storageSnapshot = this.storage.snapshot();

    switch (Number(transaction.type)) {
      case TXN_SEND:
        if (balance < transaction.fee + transaction.value) {
          this.drop(record, 'insufficient balance to send');
          return;
        }
        spent = transaction.value;
        credit = { clientId: transaction.toClientId, amount: transaction.value };
        break;
      case TXN_DATA:
        break;
      case TXN_SMART_CONTRACT: {
        if (transaction.toClientId !== STORAGE_SC_ADDRESS) {
          status = this.settings.executionErrorStatus;
          // This fake runs only the storage smart contract, and this text is its own.
          output = 'invalid smart contract address';
          break;
        }
        try {
          const result = await this.storage.call(transaction.functionName ?? '', transaction.input, {
            hash: transaction.hash,
            clientId: transaction.clientId,
            publicKey: transaction.publicKey,
            value: transaction.value,
            creationDate: Number(transaction.creationDate),
            round,
            senderBalance: sender?.balance,
            scheme: this.schemes.get(transaction.clientId) ?? this.settings.defaultScheme,
          });
          output = result.output;
          spent = result.locked;
        } catch (error) {
          if (!(error instanceof StorageCallError)) {
            throw error;
          }
          status = this.settings.executionErrorStatus;
          output = error.message;
        }
        break;
      }
      default:
        this.drop(record, `invalid transaction type: ${transaction.type}`);
        return;
    }

    if (balance < spent + fee) {
      // The fee transfer fails, so the whole transaction stays out of the block.
      this.storage.restore(storageSnapshot);
      this.drop(record, 'insufficient balance');
      return;
    }

    const state = sender ?? { balance: 0n, nonce: 0, txn: '', round };
    state.balance = balance - spent - fee;
    state.nonce += 1;
    state.txn = transaction.hash;
    state.round = round;
    this.clients.set(transaction.clientId, state);
    if (credit !== undefined && credit.amount > 0n) {
      this.credit(credit.clientId, credit.amount, transaction.hash, round);
    }
    if (fee > 0n) {
      this.credit(MINER_SC_ADDRESS, fee, transaction.hash, round);
    }

    const block = this.appendBlock(transaction.hash, entry.minerId);
    record.state = status === 1 ? 'applied' : 'failed';
    record.transactionStatus = status;
    record.output = output;
    record.round = block.round;
    record.applied += 1;
    this.confirmations.set(transaction.hash, {
      block,
      body: confirmationJson(transaction, block, status, output),
    });
    this.replacePast(transaction.clientId, state.nonce);
  }

  private credit(clientId: string, amount: bigint, hash: string, round: number): void {
    const state = this.clients.get(clientId) ?? { balance: 0n, nonce: 0, txn: '', round };
    state.balance += amount;
    state.txn = hash;
    state.round = round;
    this.clients.set(clientId, state);
  }

  private drop(record: TransactionRecord, reason: string): void {
    record.state = 'dropped';
    record.output = reason;
  }

  /** `RemoveFromPool`: transactions of the client whose nonce is now used never apply. */
  private replacePast(clientId: string, nonce: number): void {
    for (const [hash, entry] of this.pool) {
      if (entry.transaction.clientId === clientId && entry.transaction.nonce <= BigInt(nonce)) {
        this.pool.delete(hash);
        entry.record.state = 'replaced';
        entry.record.output = `nonce ${entry.transaction.nonce} was used by another transaction`;
      }
    }
  }

  private lastBlock(): Block {
    const block = this.blocks.at(-1);
    if (block === undefined) {
      throw new Error('the chain has no block');
    }
    return block;
  }

  /**
   * Finalizes a block holding at most one transaction. Its hash uses the formula the Go SDK checks:
   * sha3 of `miner:prev:creation_date:round:seed:state_changes:merkle_root:receipt_root`. With one
   * leaf the merkle root is MHash(leaf, leaf) and the path is the leaf itself.
   */
  private appendBlock(transactionHash: string | undefined, minerId: string): Block {
    const previous = this.blocks.at(-1);
    const round = previous === undefined ? this.settings.startRound : previous.round + 1;
    const leaf = transactionHash ?? sha3Hex(`empty block ${round}`);
    const receiptLeaf = sha3Hex(`receipt:${leaf}`);
    const merkleRoot = sha3Hex(leaf + leaf);
    const receiptRoot = sha3Hex(receiptLeaf + receiptLeaf);
    const randomSeed = BigInt.asIntN(64, BigInt(`0x${sha3Hex(`seed:${round}`).slice(0, 16)}`));
    const stateChangesCount = transactionHash === undefined ? 0 : 3;
    const creationDate = Math.max(this.now(), previous?.creationDate ?? 0);
    const previousHash = previous?.hash ?? sha3Hex('genesis');
    const hash = sha3Hex(
      [
        minerId,
        previousHash,
        creationDate,
        round,
        randomSeed,
        stateChangesCount,
        merkleRoot,
        receiptRoot,
      ].join(':'),
    );
    const block: Block = {
      round,
      hash,
      previousHash,
      creationDate,
      minerId,
      randomSeed,
      stateChangesCount,
      merkleRoot,
      receiptRoot,
      stateHash: Buffer.from(sha3Hex(`state:${round}`), 'hex').toString('base64'),
      transactionCount: transactionHash === undefined ? 0 : 1,
    };
    this.blocks.push(block);
    return block;
  }
}

function newRecord(transaction: Transaction): TransactionRecord {
  return {
    hash: transaction.hash,
    clientId: transaction.clientId,
    toClientId: transaction.toClientId,
    nonce: Number(transaction.nonce),
    type: Number(transaction.type),
    functionName: transaction.functionName,
    value: transaction.value,
    fee: transaction.fee,
    state: 'pending',
    transactionStatus: 0,
    output: '',
    round: undefined,
    submissions: 0,
    applied: 0,
  };
}

/** Builds a transaction's JSON in Go's field order (chaincore/transaction `Transaction`), leaving out empty omitempty fields. */
function transactionJson(
  transaction: Transaction,
  result?: { output: string; outputHash: string; status: number },
): Record<string, unknown> {
  const output = result?.output ?? transaction.output;
  return {
    hash: transaction.hash,
    version: transaction.version,
    client_id: transaction.clientId,
    public_key: transaction.publicKey === '' ? undefined : transaction.publicKey,
    to_client_id: transaction.toClientId === '' ? undefined : transaction.toClientId,
    chain_id: transaction.chainId === '' ? undefined : transaction.chainId,
    transaction_data: transaction.transactionData,
    transaction_value: transaction.value,
    signature: transaction.signature,
    creation_date: transaction.creationDate,
    transaction_fee: transaction.fee,
    transaction_nonce: transaction.nonce,
    transaction_type: transaction.type,
    transaction_output: output === '' ? undefined : output,
    txn_output_hash: result?.outputHash ?? transaction.outputHash,
    transaction_status: result?.status ?? transaction.status,
  };
}

/** Builds a confirmation's JSON in the field order of chaincore/transaction `Confirmation`. */
function confirmationJson(
  transaction: Transaction,
  block: Block,
  status: number,
  output: string,
): Record<string, unknown> {
  const outputHash = sha3Hex(output);
  const receiptLeaf = sha3Hex(`receipt:${transaction.hash}`);
  return {
    version: '1.0',
    hash: transaction.hash,
    block_hash: block.hash,
    previous_block_hash: block.previousHash,
    txn: transactionJson(transaction, { output, outputHash, status }),
    creation_date: block.creationDate,
    miner_id: block.minerId,
    round: block.round,
    transaction_status: status,
    round_random_seed: block.randomSeed,
    state_changes_count: block.stateChangesCount,
    merkle_tree_root: block.merkleRoot,
    merkle_tree_path: { nodes: [transaction.hash], leaf_index: 0 },
    receipt_merkle_tree_root: block.receiptRoot,
    receipt_merkle_tree_path: { nodes: [receiptLeaf], leaf_index: 0 },
  };
}
