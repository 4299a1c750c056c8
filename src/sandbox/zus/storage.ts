/**
 * The fake storage smart contract: a blobber registry, allocations, the `new_allocation_request` and
 * `update_allocation_request` transactions, and the storage REST reads built on them. Rules and
 * error texts follow 0chain/0chain `smartcontract/storagesc` (allocation.go, models.go,
 * storage_allocation.go, handler.go); each function names the one it mirrors.
 */
import { GIB, minBigInt, readStorageSettings, type StorageSettings } from './config.js';
import { type SignatureScheme, sha3Hex, verifySignature } from './crypto.js';
import { ChainError } from './http.js';
import { encodeJson, type GoStructReader, type JsonValue, parseJson, readGoStruct } from './json.js';

/** Blobber as the fake chain stores it. Amounts in SAS, sizes in bytes, times in unix seconds. */
export interface BlobberRecord {
  id: string;
  url: string;
  readPrice: bigint;
  writePrice: bigint;
  capacity: number;
  allocated: number;
  savedData: number;
  /** Time of the last health check; undefined means "just now" at every read, so the blobber stays healthy. */
  lastHealthCheck: number | undefined;
  isKilled: boolean;
  isShutdown: boolean;
  notAvailable: boolean;
  isRestricted: boolean;
  isEnterprise: boolean;
  storageVersion: number;
  totalStake: bigint;
  totalOffers: bigint;
  delegateWallet: string;
  creationRound: number;
  /** Public key that signs the blobber's auth tickets; without it only the ticket's presence and form are checked. */
  publicKey: string | undefined;
}

interface Terms {
  readPrice: bigint;
  writePrice: bigint;
}

interface BlobberAllocationRecord {
  blobberId: string;
  size: number;
  terms: Terms;
}

/** Allocation as the fake chain stores it (storagesc `storageAllocationBase`). */
export interface AllocationRecord {
  id: string;
  tx: string;
  name: string;
  dataShards: number;
  parityShards: number;
  size: number;
  expiration: number;
  owner: string;
  ownerPublicKey: string;
  ownerSigningPublicKey: string;
  preferredBlobbers: string[];
  blobberAllocs: BlobberAllocationRecord[];
  thirdPartyExtendable: boolean;
  fileOptions: number;
  writePool: bigint;
  readPriceRange: { min: bigint; max: bigint };
  writePriceRange: { min: bigint; max: bigint };
  startTime: number;
  finalized: boolean;
  canceled: boolean;
  movedToChallenge: bigint;
  movedBack: bigint;
  timeUnitSeconds: number;
  isEnterprise: boolean;
  storageVersion: number;
}

/** Form of the message an auth ticket signs, which the "hermes" hard fork changed. */
export type AuthTicketMessage = 'owner-round' | 'owner-id';

/** Transaction fields and chain state that a storage-SC call receives. */
export interface StorageCall {
  hash: string;
  clientId: string;
  publicKey: string;
  value: bigint;
  creationDate: number;
  round: number;
  /** Balance of the sender before this transaction, or undefined when the chain has no state for it. */
  senderBalance: bigint | undefined;
  scheme: SignatureScheme;
}

/** Result of a successful call: the transaction output and the tokens moved from the sender to the contract. */
export interface StorageCallResult {
  output: string;
  locked: bigint;
}

/** A failed call; its message is the transaction output the chain records. */
export class StorageCallError extends Error {
  override name = 'StorageCallError';
}

/** Fields of a blobber that tests set; every other field gets a working default. */
export interface FakeBlobberInput {
  id: string;
  url?: string;
  /** Prices in SAS: write per GiB per time unit, read per GiB. */
  readPrice?: bigint | number;
  writePrice?: bigint | number;
  /** Capacity in bytes (default 1 TiB). */
  capacity?: number;
  allocated?: number;
  lastHealthCheck?: number;
  isKilled?: boolean;
  isShutdown?: boolean;
  notAvailable?: boolean;
  isRestricted?: boolean;
  isEnterprise?: boolean;
  storageVersion?: number;
  /** Total stake in SAS (default 10^8 ZCN, so stake never limits an allocation). */
  totalStake?: bigint | number;
  /** Hex public key (the network's signature scheme) that signs this blobber's auth tickets. */
  publicKey?: string;
}

const FREE_STAKE = 10n ** 18n;

/** Ceil(size / dataShards) as the chain computes it in float64 (storagesc `bSize`). */
function blobberSize(size: number, dataShards: number): number {
  return Math.ceil(size / dataShards);
}

/** Coin(float64(price) × size/GB), truncated as `currency.MultFloat64` does. */
function priceForSize(price: bigint, size: number): bigint {
  return BigInt(Math.trunc(Number(price) * (size / GIB)));
}

function cappedTerms(blobber: BlobberRecord, settings: StorageSettings): Terms {
  return {
    readPrice: minBigInt(blobber.readPrice, settings.maxReadPrice),
    writePrice: minBigInt(blobber.writePrice, settings.maxWritePrice),
  };
}

/** Cost of one time unit of an allocation (storagesc `cost`). */
function allocationCost(blobberAllocs: readonly BlobberAllocationRecord[]): bigint {
  return blobberAllocs.reduce((sum, item) => sum + priceForSize(item.terms.writePrice, item.size), 0n);
}

/** Cost of the rest of the allocation's time unit (storagesc `costForRDTU`). */
function restOfPeriodCost(allocation: AllocationRecord, now: number): bigint {
  const restInTimeUnits = (allocation.expiration - now) / allocation.timeUnitSeconds;
  return allocation.blobberAllocs.reduce((sum, item) => {
    const full = priceForSize(item.terms.writePrice, item.size);
    return sum + BigInt(Math.trunc(Number(full) * restInTimeUnits));
  }, 0n);
}

/** Go's `%v` of a storagesc PriceRange: `{min max}`. */
function formatRange(range: { min: bigint; max: bigint }): string {
  return `{${range.min} ${range.max}}`;
}

/** The storage smart contract's state and calls. */
export class StorageContract {
  readonly blobbers = new Map<string, BlobberRecord>();
  readonly allocations = new Map<string, AllocationRecord>();

  constructor(
    private readonly fields: () => Record<string, string>,
    private readonly now: () => number,
    private readonly authTicketMessage: AuthTicketMessage,
    private readonly rawAllocations: Map<string, Record<string, unknown> & { id: string }>,
  ) {}

  /**
   * Finds an allocation: a ledger allocation, or one given to the fake as a response body
   * (`upsertAllocation`) read into a record. With `adopt`, such a body becomes a ledger allocation,
   * so the sharders serve the updated state from then on.
   */
  findAllocation(id: string, adopt: boolean): AllocationRecord | undefined {
    const stored = this.allocations.get(id);
    if (stored !== undefined) {
      return stored;
    }
    const body = this.rawAllocations.get(id);
    if (body === undefined) {
      return undefined;
    }
    const record = allocationFromBody(body, this.settings());
    if (adopt) {
      this.allocations.set(id, record);
      this.rawAllocations.delete(id);
    }
    return record;
  }

  settings(): StorageSettings {
    return readStorageSettings(this.fields());
  }

  upsertBlobber(input: FakeBlobberInput, round: number): BlobberRecord {
    const previous = this.blobbers.get(input.id);
    const blobber: BlobberRecord = {
      id: input.id,
      url: input.url ?? previous?.url ?? `http://127.0.0.1:1/blobber/${input.id.slice(0, 8)}`,
      readPrice: BigInt(input.readPrice ?? previous?.readPrice ?? 0n),
      writePrice: BigInt(input.writePrice ?? previous?.writePrice ?? 100_000_000n),
      capacity: input.capacity ?? previous?.capacity ?? 1024 * GIB,
      allocated: input.allocated ?? previous?.allocated ?? 0,
      savedData: previous?.savedData ?? 0,
      lastHealthCheck: input.lastHealthCheck ?? previous?.lastHealthCheck,
      isKilled: input.isKilled ?? previous?.isKilled ?? false,
      isShutdown: input.isShutdown ?? previous?.isShutdown ?? false,
      notAvailable: input.notAvailable ?? previous?.notAvailable ?? false,
      isRestricted: input.isRestricted ?? previous?.isRestricted ?? false,
      isEnterprise: input.isEnterprise ?? previous?.isEnterprise ?? false,
      storageVersion: input.storageVersion ?? previous?.storageVersion ?? 1,
      totalStake: BigInt(input.totalStake ?? previous?.totalStake ?? FREE_STAKE),
      totalOffers: previous?.totalOffers ?? 0n,
      delegateWallet: previous?.delegateWallet ?? sha3Hex(`delegate:${input.id}`),
      creationRound: previous?.creationRound ?? round,
      publicKey: input.publicKey ?? previous?.publicKey,
    };
    this.blobbers.set(blobber.id, blobber);
    return blobber;
  }

  /**
   * Runs one storage-SC function for a transaction. State changes only when the call succeeds;
   * a StorageCallError carries the output the chain records for a failed transaction.
   */
  async call(functionName: string, input: JsonValue, call: StorageCall): Promise<StorageCallResult> {
    const snapshot = this.snapshot();
    try {
      switch (functionName) {
        case 'new_allocation_request':
          return await this.newAllocation(input, call);
        case 'update_allocation_request':
          return await this.updateAllocation(input, call);
        default:
          // The storage SC's text for an unknown function was not read; this one follows its error style.
          throw new StorageCallError(
            `invalid_storage_function_name: Invalid storage function '${functionName}' called`,
          );
      }
    } catch (error) {
      this.restore(snapshot);
      throw error;
    }
  }

  /** A deep copy of the contract's state, for `restore` when a transaction is undone. */
  snapshot(): {
    blobbers: Map<string, BlobberRecord>;
    allocations: Map<string, AllocationRecord>;
    rawAllocations: Map<string, Record<string, unknown> & { id: string }>;
  } {
    return {
      blobbers: structuredClone(this.blobbers),
      allocations: structuredClone(this.allocations),
      rawAllocations: new Map(this.rawAllocations),
    };
  }

  restore(snapshot: ReturnType<StorageContract['snapshot']>): void {
    this.rawAllocations.clear();
    for (const [id, body] of snapshot.rawAllocations) {
      this.rawAllocations.set(id, body);
    }
    this.blobbers.clear();
    for (const [id, blobber] of snapshot.blobbers) {
      this.blobbers.set(id, blobber);
    }
    this.allocations.clear();
    for (const [id, allocation] of snapshot.allocations) {
      this.allocations.set(id, allocation);
    }
  }

  // --- new_allocation_request (storagesc allocation.go newAllocationRequestInternal) ---

  private async newAllocation(input: JsonValue, call: StorageCall): Promise<StorageCallResult> {
    const fail = (text: string) => new StorageCallError(`allocation_creation_failed: ${text}`);
    const settings = this.settings();

    let request: ReturnType<typeof decodeNewAllocation>;
    try {
      request = decodeNewAllocation(input);
    } catch (error) {
      throw fail(`malformed request: ${(error as Error).message}`);
    }

    const invalid = validateNewAllocation(request, settings);
    if (invalid !== undefined) {
      throw fail(`invalid request: ${invalid}`);
    }
    if (request.ownerId === '') {
      request.ownerId = call.clientId;
      request.ownerPublicKey = call.publicKey;
    }
    if (request.blobberAuthTickets.length < request.blobbers.length) {
      throw fail('blobber_auth_tickets are less than blobbers');
    }
    const tickets = request.blobberAuthTickets.slice(0, request.blobbers.length);

    const blobbers: BlobberRecord[] = [];
    for (const id of request.blobbers) {
      const blobber = this.blobbers.get(id);
      if (blobber === undefined) {
        // "value not present" is the state trie's text for a missing key; the chain reads blobbers from it.
        throw fail('get blobbers failed: value not present');
      }
      blobbers.push(blobber);
    }

    const required = request.dataShards + request.parityShards;
    const size = blobberSize(request.size, request.dataShards);
    const allocation: AllocationRecord = {
      id: call.hash,
      tx: call.hash,
      name: request.name,
      dataShards: request.dataShards,
      parityShards: request.parityShards,
      size: request.size,
      expiration: call.creationDate + settings.timeUnitSeconds,
      owner: request.ownerId,
      ownerPublicKey: request.ownerPublicKey,
      ownerSigningPublicKey: request.ownerSigningPublicKey,
      preferredBlobbers: request.blobbers.slice(0, settings.maxBlobbersPerAllocation),
      blobberAllocs: [],
      thirdPartyExtendable: request.thirdPartyExtendable,
      fileOptions: request.fileOptionsChanged ? request.fileOptions : 63,
      writePool: 0n,
      readPriceRange: request.readPriceRange,
      writePriceRange: request.writePriceRange,
      startTime: call.creationDate,
      finalized: false,
      canceled: false,
      movedToChallenge: 0n,
      movedBack: 0n,
      timeUnitSeconds: settings.timeUnitSeconds,
      isEnterprise: request.isEnterprise,
      storageVersion: request.storageVersion,
    };

    // storagesc models.go validateEachBlobber: every listed blobber is checked and the first
    // data+parity that pass are used.
    const accepted: BlobberRecord[] = [];
    const errors: string[] = [];
    for (const [index, blobber] of blobbers.entries()) {
      const problem = await this.checkNewAllocationBlobber(
        allocation,
        request,
        blobber,
        tickets[index] ?? '',
        call,
      );
      if (problem === undefined) {
        accepted.push(blobber);
      } else {
        errors.push(problem);
      }
    }
    if (accepted.length < required) {
      throw fail(`Not enough blobbers to honor the allocation: ${errors.join(', ')}`);
    }

    for (const blobber of accepted.slice(0, required)) {
      const terms = cappedTerms(blobber, settings);
      allocation.blobberAllocs.push({ blobberId: blobber.id, size, terms });
      blobber.allocated += size;
      blobber.totalOffers += priceForSize(terms.writePrice, size);
    }

    // storage_allocation.go addToWritePool then checkFunding.
    if (call.value > 0n) {
      const lockProblem = checkClientBalance(call);
      if (lockProblem !== undefined) {
        throw fail(lockProblem);
      }
      allocation.writePool += call.value;
    }
    const cost = allocationCost(allocation.blobberAllocs);
    if (allocation.writePool < cost) {
      throw fail(`not enough tokens to honor the allocation cost ${allocation.writePool} < ${cost}`);
    }

    this.allocations.set(allocation.id, allocation);
    const output = JSON.stringify({
      id: allocation.id,
      blobber_ids: allocation.blobberAllocs.map((item) => item.blobberId),
    });
    return { output, locked: call.value };
  }

  /** One blobber's checks at allocation creation, or undefined when it may be used. */
  private async checkNewAllocationBlobber(
    allocation: AllocationRecord,
    request: NewAllocationInput,
    blobber: BlobberRecord,
    ticket: string,
    call: StorageCall,
  ): Promise<string | undefined> {
    if (request.isEnterprise && !blobber.isEnterprise) {
      return `blobber ${blobber.id} is not enterprise`;
    }
    if (!request.isEnterprise && blobber.isEnterprise) {
      return `blobber ${blobber.id} is enterprise`;
    }
    if (!request.isEnterprise && request.storageVersion === 1 && blobber.storageVersion !== 1) {
      return `blobber version ${blobber.id} is not compatible with v2 allocation`;
    }
    if (blobber.isEnterprise || blobber.isRestricted) {
      const ticketProblem = await this.verifyAuthTicket(
        allocation.owner,
        ticket,
        blobber,
        request.authRoundExpiry,
        call,
      );
      if (ticketProblem !== undefined) {
        return ticketProblem;
      }
    }
    return this.checkActive(allocation, blobber);
  }

  /** storagesc models.go `isActive`: health, availability, prices and free capacity of a blobber. */
  private checkActive(allocation: AllocationRecord, blobber: BlobberRecord): string | undefined {
    const settings = this.settings();
    const now = this.now();
    if (blobber.isKilled) {
      return `blobber ${blobber.id} is not active, killed`;
    }
    if (blobber.isShutdown) {
      return `blobber ${blobber.id} is not active, shut_down`;
    }
    const lastHealthCheck = blobber.lastHealthCheck ?? now;
    if (lastHealthCheck < now - settings.healthCheckPeriodSeconds) {
      return `blobber ${blobber.id} is not active,  failed health check, last check ${lastHealthCheck}.`;
    }
    if (blobber.notAvailable) {
      return `blobber ${blobber.id} is not currently available for new allocations`;
    }
    if (
      !(
        allocation.readPriceRange.min <= blobber.readPrice &&
        blobber.readPrice <= allocation.readPriceRange.max
      )
    ) {
      return `read price range ${formatRange(allocation.readPriceRange)} does not match blobber ${blobber.id} read price ${blobber.readPrice}`;
    }
    if (
      !(
        allocation.writePriceRange.min <= blobber.writePrice &&
        blobber.writePrice <= allocation.writePriceRange.max
      )
    ) {
      return `write price range ${formatRange(allocation.writePriceRange)} does not match blobber ${blobber.id} write price ${blobber.writePrice}`;
    }
    const size = blobberSize(allocation.size, allocation.dataShards);
    if (blobber.capacity - blobber.allocated < size) {
      return `blobber ${blobber.id} free capacity ${blobber.capacity - blobber.allocated} insufficient, wanted ${size}`;
    }
    const staked = stakedCapacity(blobber);
    if (staked - blobber.allocated < size) {
      return `blobber ${blobber.id} free staked capacity ${staked - blobber.allocated} insufficient, wanted ${size}`;
    }
    const unallocated = unallocatedCapacity(blobber);
    if (blobber.writePrice > 0n && unallocated < size) {
      return `blobber ${blobber.id} staked capacity ${unallocated} is insufficient, wanted ${size}`;
    }
    return undefined;
  }

  /**
   * storagesc models.go `verifyBlobberAuthTicket`. After the "hermes" fork the ticket signs
   * sha3("<owner>_<auth_round_expiry>") and expires at that round; before it, the owner's id.
   * Without a registered blobber key the fake checks only that the ticket is a 64-hex signature.
   */
  private async verifyAuthTicket(
    owner: string,
    ticket: string,
    blobber: BlobberRecord,
    roundExpiry: number,
    call: StorageCall,
  ): Promise<string | undefined> {
    const failed = (reason?: string) =>
      reason === undefined
        ? `blobber ${blobber.id} auth ticket verification failed`
        : `blobber ${blobber.id} auth ticket verification failed: ${reason}`;
    if (ticket === '') {
      return failed('invalid_auth_ticket: empty auth ticket');
    }
    let messageHex = owner;
    if (this.authTicketMessage === 'owner-round') {
      if (roundExpiry < call.round) {
        return failed(
          `auth_ticket_expired: auth ticket expired, current round: ${call.round}, expiry round: ${roundExpiry}`,
        );
      }
      messageHex = sha3Hex(`${owner}_${roundExpiry}`);
    }
    if (blobber.publicKey === undefined) {
      return /^[0-9a-f]{64}$/i.test(ticket) ? undefined : failed();
    }
    const message = Buffer.from(messageHex, 'hex');
    const check = await verifySignature(call.scheme, blobber.publicKey, ticket, message);
    if (check.kind === 'error') {
      return failed(check.message);
    }
    return check.kind === 'valid' ? undefined : failed();
  }

  // --- update_allocation_request (storagesc allocation.go updateAllocationRequestInternal) ---

  private async updateAllocation(input: JsonValue, call: StorageCall): Promise<StorageCallResult> {
    const fail = (text: string) => new StorageCallError(`allocation_updating_failed: ${text}`);
    const settings = this.settings();

    let request: UpdateAllocationInput;
    try {
      request = decodeUpdateAllocation(input);
    } catch (error) {
      throw fail(`invalid request: ${(error as Error).message}`);
    }
    if (request.size > 0) {
      request.extend = true;
    }
    if (request.ownerId === '') {
      request.ownerId = call.clientId;
    }

    const allocation = this.findAllocation(request.id, true);
    if (allocation === undefined) {
      throw fail("can't get existing allocation: value not present");
    }

    // After the "hermes" fork a sender with an update ticket signed by the owner counts as the owner.
    // Any other sender may only extend, and only a third-party-extendable allocation.
    const thirdParty = call.clientId !== allocation.owner && request.updateTicket === undefined;
    if (thirdParty && (!allocation.thirdPartyExtendable || !request.extend)) {
      throw fail('only owner can update the allocation');
    }

    const invalid = await validateUpdate(request, allocation, call);
    if (invalid !== undefined) {
      throw fail(invalid);
    }
    if (allocation.expiration < call.creationDate) {
      throw fail("can't update expired allocation");
    }
    allocation.tx = call.hash;

    // After the "demeter" fork the transaction value goes into the write pool first.
    if (call.value > 0n) {
      const lockProblem = checkClientBalance(call);
      if (lockProblem !== undefined) {
        throw fail(lockProblem);
      }
      allocation.writePool += call.value;
    }

    if (thirdParty) {
      this.extendAllocation(allocation, request, call, settings);
    } else {
      if (request.addBlobberId !== '') {
        const problem = await this.changeBlobbers(allocation, request, call, settings);
        if (problem !== undefined) {
          throw fail(problem);
        }
      }
      if (request.extend) {
        this.extendAllocation(allocation, request, call, settings);
      }
      if (request.setThirdPartyExtendable) {
        allocation.thirdPartyExtendable = true;
      }
      if (request.fileOptionsChanged) {
        allocation.fileOptions = request.fileOptions;
      }
      if (request.ownerId !== allocation.owner) {
        allocation.owner = request.ownerId;
        if (request.ownerPublicKey === '') {
          throw fail('owner public key is required when updating owner id');
        }
        allocation.ownerPublicKey = request.ownerPublicKey;
      }
      if (request.ownerSigningPublicKey !== '') {
        allocation.ownerSigningPublicKey = request.ownerSigningPublicKey;
      }
    }

    const required = requiredLockForUpdate(allocation, request.extend, call.creationDate);
    // After the "electra" fork any remaining shortfall fails the update.
    if (required > 0n) {
      throw fail(
        `not enough tokens to cover update allocation cost (locked : ${call.value} < required : ${required + call.value})`,
      );
    }
    return { output: encodeJson(allocationStateJson(allocation)), locked: call.value };
  }

  /**
   * storagesc allocation.go `extendAllocation`: one more time unit from the transaction's time, the
   * size grows by the request's size and every blobber's terms are refreshed to its current prices.
   */
  private extendAllocation(
    allocation: AllocationRecord,
    request: UpdateAllocationInput,
    call: StorageCall,
    settings: StorageSettings,
  ): void {
    const diff = Math.ceil(request.size / allocation.dataShards);
    const newSize = (allocation.blobberAllocs[0]?.size ?? 0) + diff;
    allocation.expiration = call.creationDate + settings.timeUnitSeconds;
    allocation.size += request.size;
    for (const details of allocation.blobberAllocs) {
      const blobber = this.blobbers.get(details.blobberId);
      if (blobber === undefined) {
        throw new StorageCallError(`allocation_updating_failed: value not present`);
      }
      if (blobber.capacity === 0) {
        throw new StorageCallError(
          `allocation_extending_failed: blobber ${blobber.id} no longer provides its service`,
        );
      }
      if (request.size > 0) {
        if (blobber.isShutdown || blobber.isKilled) {
          throw new StorageCallError(`allocation_extending_failed: blobber ${blobber.id} is not active`);
        }
        if (
          blobber.capacity - blobber.allocated - diff < 0 ||
          stakedCapacity(blobber) - blobber.allocated - diff < 0
        ) {
          throw new StorageCallError(
            `allocation_extending_failed: blobber ${blobber.id} doesn't have enough free space`,
          );
        }
        blobber.allocated += diff;
      }
      const oldOffer = priceForSize(details.terms.writePrice, details.size);
      details.terms = cappedTerms(blobber, settings);
      details.size = newSize;
      blobber.totalOffers += priceForSize(details.terms.writePrice, details.size) - oldOffer;
    }
  }

  /** storagesc models.go `changeBlobbers` and `replaceBlobber`; returns the failure text or undefined. */
  private async changeBlobbers(
    allocation: AllocationRecord,
    request: UpdateAllocationInput,
    call: StorageCall,
    settings: StorageSettings,
  ): Promise<string | undefined> {
    const addId = request.addBlobberId;
    if (allocation.blobberAllocs.some((item) => item.blobberId === addId)) {
      return `allocation already has blobber ${addId}`;
    }
    const added = this.blobbers.get(addId);
    if (added === undefined) {
      return `can't get blobber ${addId} to add : value not present`;
    }
    const inactive = this.checkActive(allocation, added);
    if (inactive !== undefined) {
      return inactive;
    }
    if (allocation.isEnterprise && !added.isEnterprise) {
      return `blobber ${added.id} is not enterprise`;
    }
    if (added.isEnterprise || added.isRestricted) {
      const ticketProblem = await this.verifyAuthTicket(
        allocation.owner,
        request.addBlobberAuthTicket,
        added,
        request.authRoundExpiry,
        call,
      );
      if (ticketProblem !== undefined) {
        return ticketProblem;
      }
    }
    if (!allocation.isEnterprise && allocation.storageVersion === 1 && added.storageVersion !== 1) {
      return `blobber version ${added.id} is not compatible with v2 allocation`;
    }

    const size = blobberSize(allocation.size, allocation.dataShards);
    added.allocated += size;
    const addedAlloc: BlobberAllocationRecord = {
      blobberId: added.id,
      size,
      terms: cappedTerms(added, settings),
    };

    if (request.removeBlobberId !== '') {
      const index = allocation.blobberAllocs.findIndex((item) => item.blobberId === request.removeBlobberId);
      const removedAlloc = allocation.blobberAllocs[index];
      if (removedAlloc === undefined) {
        return `cannot find blobber ${request.removeBlobberId} in allocation`;
      }
      // payCancellationChargeToRemoveBlobber: the removed blobber's share of the cancellation charge
      // (by write price) leaves the write pool, since no tokens moved to the challenge pool here.
      const charge = cancellationCharge(allocation, settings);
      const totalWritePrice = allocation.blobberAllocs.reduce((sum, item) => sum + item.terms.writePrice, 0n);
      if (charge > 0n && totalWritePrice > 0n) {
        const weight = Number(removedAlloc.terms.writePrice) / Number(totalWritePrice);
        const share = BigInt(Math.trunc(Number(charge) * weight));
        allocation.writePool -= minBigInt(share, allocation.writePool);
      }
      const removed = this.blobbers.get(removedAlloc.blobberId);
      if (removed !== undefined) {
        removed.allocated -= removedAlloc.size;
        removed.totalOffers -= priceForSize(removedAlloc.terms.writePrice, removedAlloc.size);
      }
      allocation.blobberAllocs[index] = addedAlloc;
    } else {
      allocation.parityShards += 1;
      allocation.blobberAllocs.push(addedAlloc);
    }
    added.totalOffers += priceForSize(addedAlloc.terms.writePrice, addedAlloc.size);
    return undefined;
  }
}

/** stakepool `CheckClientBalance` for the value a transaction locks. */
function checkClientBalance(call: StorageCall): string | undefined {
  if (call.senderBalance === undefined) {
    return 'no tokens to lock';
  }
  return call.value > call.senderBalance ? 'lock amount is greater than balance' : undefined;
}

function cancellationCharge(allocation: AllocationRecord, settings: StorageSettings): bigint {
  const cost = allocationCost(allocation.blobberAllocs);
  const charge = BigInt(Math.trunc(Number(cost) * settings.cancellationCharge));
  const used = allocation.movedToChallenge - allocation.movedBack;
  if (used >= charge) {
    return 0n;
  }
  const rest = charge - used;
  return minBigInt(rest, allocation.writePool);
}

function stakedCapacity(blobber: BlobberRecord): number {
  if (blobber.writePrice === 0n) {
    return blobber.capacity;
  }
  return Math.trunc((Number(blobber.totalStake) / Number(blobber.writePrice)) * GIB);
}

function unallocatedCapacity(blobber: BlobberRecord): number {
  if (blobber.writePrice === 0n) {
    return blobber.capacity;
  }
  const free = blobber.totalStake - blobber.totalOffers;
  return free <= 0n ? 0 : Math.trunc((Number(free) / Number(blobber.writePrice)) * GIB);
}

/**
 * Computes the lock an update still needs (storagesc models.go `requiredTokensForUpdateAllocation`
 * after the "hercules" fork). That is the cost after the update less the write pool, where the cost
 * covers a full time unit when extended and the rest of the period otherwise. It is at least the
 * cost of the unused space less the write pool. The fake moves no tokens to a challenge pool, so
 * that pool is empty and no space is used.
 */
function requiredLockForUpdate(allocation: AllocationRecord, extend: boolean, now: number): bigint {
  const after =
    extend || allocation.isEnterprise
      ? allocationCost(allocation.blobberAllocs)
      : restOfPeriodCost(allocation, now);
  let required = after > allocation.writePool ? after - allocation.writePool : 0n;
  const unused = allocationCost(allocation.blobberAllocs);
  if (unused > allocation.writePool && unused - allocation.writePool > required) {
    required = unused - allocation.writePool;
  }
  return required;
}

// --- request decoding and validation ---

interface NewAllocationInput {
  name: string;
  dataShards: number;
  parityShards: number;
  size: number;
  ownerId: string;
  ownerPublicKey: string;
  blobbers: string[];
  blobberAuthTickets: string[];
  readPriceRange: { min: bigint; max: bigint };
  writePriceRange: { min: bigint; max: bigint };
  thirdPartyExtendable: boolean;
  fileOptionsChanged: boolean;
  fileOptions: number;
  isEnterprise: boolean;
  storageVersion: number;
  ownerSigningPublicKey: string;
  authRoundExpiry: number;
}

function readPriceRange(reader: GoStructReader, field: string, owner: string): { min: bigint; max: bigint } {
  const range = reader.struct(field, `${owner}.${field}`);
  return {
    min: range?.integer('min', 'uint64') ?? 0n,
    max: range?.integer('max', 'uint64') ?? 0n,
  };
}

function decodeNewAllocation(input: JsonValue): NewAllocationInput {
  const reader = readGoStruct('newAllocationRequest', input);
  return {
    name: reader.string('name'),
    dataShards: Number(reader.integer('data_shards', 'int')),
    parityShards: Number(reader.integer('parity_shards', 'int')),
    size: Number(reader.integer('size', 'int64')),
    ownerId: reader.string('owner_id'),
    ownerPublicKey: reader.string('owner_public_key'),
    blobbers: reader.stringArray('blobbers'),
    blobberAuthTickets: reader.stringArray('blobber_auth_tickets'),
    readPriceRange: readPriceRange(reader, 'read_price_range', 'newAllocationRequest'),
    writePriceRange: readPriceRange(reader, 'write_price_range', 'newAllocationRequest'),
    thirdPartyExtendable: reader.bool('third_party_extendable'),
    fileOptionsChanged: reader.bool('file_options_changed'),
    fileOptions: Number(reader.integer('file_options', 'uint16')),
    isEnterprise: reader.bool('is_enterprise'),
    storageVersion: Number(reader.integer('storage_version', 'int')),
    ownerSigningPublicKey: reader.string('owner_signing_public_key'),
    authRoundExpiry: Number(reader.integer('auth_round_expiry', 'int64')),
  };
}

/** storagesc allocation.go `newAllocationRequest.validate`. */
function validateNewAllocation(request: NewAllocationInput, settings: StorageSettings): string | undefined {
  if (request.dataShards <= 0) {
    return 'invalid number of data shards';
  }
  if (request.parityShards <= 0) {
    return 'invalid number of parity shards';
  }
  if (request.blobbers.length < request.dataShards + request.parityShards) {
    return 'blobbers provided are not enough to honour the allocation';
  }
  if (request.readPriceRange.min > request.readPriceRange.max) {
    return 'invalid read_price range';
  }
  if (request.writePriceRange.min > request.writePriceRange.max) {
    return 'invalid write_price range';
  }
  if (BigInt(request.size) < settings.minAllocSize) {
    return 'insufficient allocation size';
  }
  return undefined;
}

interface UpdateTicket {
  allocationId: string;
  userId: string;
  roundExpiry: number;
  operationType: string;
  signature: string;
}

interface UpdateAllocationInput {
  id: string;
  name: string;
  ownerId: string;
  ownerPublicKey: string;
  size: number;
  extend: boolean;
  addBlobberId: string;
  addBlobberAuthTicket: string;
  removeBlobberId: string;
  setThirdPartyExtendable: boolean;
  fileOptionsChanged: boolean;
  fileOptions: number;
  updateTicket: UpdateTicket | undefined;
  ownerSigningPublicKey: string;
  authRoundExpiry: number;
}

function decodeUpdateAllocation(input: JsonValue): UpdateAllocationInput {
  const reader = readGoStruct('storagesc.updateAllocationRequest', input);
  const ticket = reader.struct('update_ticket', 'Ticket');
  return {
    id: reader.string('id'),
    name: reader.string('name'),
    ownerId: reader.string('owner_id'),
    ownerPublicKey: reader.string('owner_public_key'),
    size: Number(reader.integer('size', 'int64')),
    extend: reader.bool('extend'),
    addBlobberId: reader.string('add_blobber_id'),
    addBlobberAuthTicket: reader.string('add_blobber_auth_ticket'),
    removeBlobberId: reader.string('remove_blobber_id'),
    setThirdPartyExtendable: reader.bool('set_third_party_extendable'),
    fileOptionsChanged: reader.bool('file_options_changed'),
    fileOptions: Number(reader.integer('file_options', 'uint16')),
    updateTicket:
      ticket === undefined
        ? undefined
        : {
            allocationId: ticket.string('allocation_id'),
            userId: ticket.string('user_id'),
            roundExpiry: Number(ticket.integer('round_expiry', 'int64')),
            operationType: ticket.string('operation_type'),
            signature: ticket.string('signature'),
          },
    ownerSigningPublicKey: reader.string('owner_signing_public_key'),
    authRoundExpiry: Number(reader.integer('auth_round_expiry', 'int64')),
  };
}

/** storagesc allocation.go `updateAllocationRequest.validate`, including the update ticket of the "hermes" fork. */
async function validateUpdate(
  request: UpdateAllocationInput,
  allocation: AllocationRecord,
  call: StorageCall,
): Promise<string | undefined> {
  const changesNothing =
    request.size === 0 &&
    !request.extend &&
    request.ownerSigningPublicKey === '' &&
    request.addBlobberId === '' &&
    request.name === '' &&
    (!request.setThirdPartyExtendable || allocation.thirdPartyExtendable) &&
    (!request.fileOptionsChanged || request.fileOptions === allocation.fileOptions) &&
    allocation.owner === request.ownerId;
  if (changesNothing) {
    return 'update allocation changes nothing';
  }
  if (request.size < 0) {
    return "allocation can't be reduced";
  }
  if (allocation.blobberAllocs.length === 0) {
    return 'invalid allocation for updating: no blobbers';
  }
  const inAllocation = (id: string) => allocation.blobberAllocs.some((item) => item.blobberId === id);
  if (request.addBlobberId !== '') {
    if (inAllocation(request.addBlobberId)) {
      return `cannot add blobber ${request.addBlobberId}, already in allocation`;
    }
  } else if (request.removeBlobberId !== '') {
    return 'cannot remove a blobber without adding one';
  }
  if (request.removeBlobberId !== '' && !inAllocation(request.removeBlobberId)) {
    return `cannot remove blobber ${request.removeBlobberId}, not in allocation`;
  }
  if (request.fileOptions > 63) {
    return `FileOptions ${request.fileOptions} incorrect`;
  }
  const ticket = request.updateTicket;
  if (ticket === undefined) {
    return undefined;
  }
  if (ticket.allocationId !== allocation.id) {
    return `UpdateTicket AllocationID ${ticket.allocationId} does not match allocation ID ${allocation.id}`;
  }
  if (ticket.userId !== call.clientId) {
    return `UpdateTicket UserID ${ticket.userId} does not match transaction client ID ${call.clientId}`;
  }
  if (ticket.roundExpiry < call.round) {
    return `UpdateTicket RoundExpiry ${ticket.roundExpiry} is less than current round ${call.round}`;
  }
  const conflicting = `invalid UpdateTicket: OperationType ${ticket.operationType} has conflicting or missing parameters`;
  const add = request.addBlobberId !== '';
  const remove = request.removeBlobberId !== '';
  const conditions: Record<string, boolean[]> = {
    add_blobber: [add, !remove, request.size <= 0],
    replace_blobber: [add, remove, request.size <= 0, !request.extend],
    size_upgrade: [request.size > 0, !add, !remove],
    extend: [request.extend, !add, !remove, request.size <= 0],
  };
  const required = conditions[ticket.operationType];
  if (required === undefined) {
    return `invalid UpdateTicket: OperationType ${ticket.operationType} is not recognized`;
  }
  if (required.some((condition) => !condition)) {
    return conflicting;
  }
  // The owner signs the raw bytes of "<allocation>:<round expiry>:<user>:<operation>".
  const payload = `${ticket.allocationId}:${ticket.roundExpiry}:${ticket.userId}:${ticket.operationType}`;
  const check = await verifySignature(
    call.scheme,
    allocation.ownerPublicKey,
    ticket.signature,
    Buffer.from(payload),
  );
  if (check.kind !== 'valid') {
    const reason = check.kind === 'error' ? check.message : '<nil>';
    return `UpdateTicket Signature verification failed: ${reason}`;
  }
  return undefined;
}

// --- JSON shapes ---

/** Builds the allocation's JSON as the storage SC encodes it in a transaction output (storagesc `StorageAllocation`). */
function allocationStateJson(allocation: AllocationRecord): Record<string, unknown> {
  return {
    id: allocation.id,
    tx: allocation.tx,
    data_shards: allocation.dataShards,
    parity_shards: allocation.parityShards,
    size: allocation.size,
    expiration_date: allocation.expiration,
    owner_id: allocation.owner,
    owner_public_key: allocation.ownerPublicKey,
    stats: emptyStats(),
    diverse_blobbers: false,
    preferred_blobbers: allocation.preferredBlobbers,
    blobber_details: allocation.blobberAllocs.map((item) => blobberDetailsJson(allocation, item)),
    third_party_extendable: allocation.thirdPartyExtendable,
    file_options: allocation.fileOptions,
    write_pool: Number(allocation.writePool),
    read_price_range: {
      min: Number(allocation.readPriceRange.min),
      max: Number(allocation.readPriceRange.max),
    },
    write_price_range: {
      min: Number(allocation.writePriceRange.min),
      max: Number(allocation.writePriceRange.max),
    },
    start_time: allocation.startTime,
    time_unit: allocation.timeUnitSeconds * 1_000_000_000,
    version: 'v2',
    is_enterprise: allocation.isEnterprise,
  };
}

function emptyStats() {
  return {
    used_size: 0,
    num_of_writes: 0,
    num_of_reads: 0,
    total_challenges: 0,
    num_open_challenges: 0,
    num_success_challenges: 0,
    num_failed_challenges: 0,
    latest_closed_challenge: '',
  };
}

function blobberDetailsJson(allocation: AllocationRecord, item: BlobberAllocationRecord) {
  return {
    blobber_id: item.blobberId,
    allocation_id: allocation.id,
    size: item.size,
    allocation_root: '',
    write_marker: null,
    stats: emptyStats(),
    terms: { read_price: item.terms.readPrice, write_price: item.terms.writePrice },
    penalty: 0,
    read_reward: 0,
    returned: 0,
    challenge_reward: 0,
    challenge_pool_integral_value: 0,
    latest_successful_chall_created_at: allocation.startTime,
    latest_finalized_chall_created_att: allocation.startTime,
  };
}

/** A blobber as the sharders' REST handlers return it (storagesc `storageNodeResponse`). */
export function blobberJson(blobber: BlobberRecord, now: number): Record<string, unknown> {
  return {
    id: blobber.id,
    url: blobber.url,
    terms: { read_price: blobber.readPrice, write_price: blobber.writePrice },
    capacity: blobber.capacity,
    allocated: blobber.allocated,
    last_health_check: blobber.lastHealthCheck ?? now,
    is_killed: blobber.isKilled,
    is_shutdown: blobber.isShutdown,
    saved_data: blobber.savedData,
    stake_pool_settings: {
      delegate_wallet: blobber.delegateWallet,
      num_delegates: 50,
      min_stake: 0,
      max_stake: 0,
      service_charge: 0.1,
    },
    not_available: blobber.notAvailable,
    challenges_passed: 0,
    challenges_completed: 0,
    total_stake: blobber.totalStake,
    creation_round: blobber.creationRound,
    read_data: 0,
    used_allocation: blobber.savedData,
    total_offers: blobber.totalOffers,
    staked_capacity: stakedCapacity(blobber),
    total_service_charge: 0,
    uncollected_service_charge: 0,
    created_at: new Date(0).toISOString(),
    is_restricted: blobber.isRestricted,
    is_enterprise: blobber.isEnterprise,
    storage_version: blobber.storageVersion,
  };
}

/** An allocation as `GET .../allocation` returns it (storagesc `StorageAllocationBlobbers`). */
export function allocationResponseJson(
  allocation: AllocationRecord,
  blobbers: ReadonlyMap<string, BlobberRecord>,
  now: number,
): Record<string, unknown> {
  return {
    ...allocationStateJson(allocation),
    write_pool: allocation.writePool,
    read_price_range: allocation.readPriceRange,
    write_price_range: allocation.writePriceRange,
    finalized: allocation.finalized,
    canceled: allocation.canceled,
    moved_to_challenge: allocation.movedToChallenge,
    moved_back: allocation.movedBack,
    moved_to_validators: 0,
    storage_version: allocation.storageVersion,
    owner_signing_public_key: allocation.ownerSigningPublicKey,
    name: allocation.name,
    blobbers: allocation.blobberAllocs.flatMap((item) => {
      const blobber = blobbers.get(item.blobberId);
      return blobber === undefined ? [] : [blobberJson(blobber, now)];
    }),
  };
}

/**
 * Reads an allocation body given to the fake directly (`upsertAllocation`) into a record, so a
 * transaction can update it. Fields the body lacks get the zero value, as Go's decoder leaves them.
 */
export function allocationFromBody(
  body: Record<string, unknown>,
  settings: StorageSettings,
): AllocationRecord {
  const number = (value: unknown) => (typeof value === 'number' && Number.isFinite(value) ? value : 0);
  const string = (value: unknown) => (typeof value === 'string' ? value : '');
  const coin = (value: unknown) => BigInt(Math.trunc(number(value)));
  const range = (value: unknown) => {
    const item = (value ?? {}) as Record<string, unknown>;
    return { min: coin(item.min), max: coin(item.max) };
  };
  const details = Array.isArray(body.blobber_details)
    ? (body.blobber_details as Record<string, unknown>[])
    : [];
  const timeUnitNanoseconds = number(body.time_unit);
  return {
    id: string(body.id),
    tx: string(body.tx),
    name: string(body.name),
    dataShards: number(body.data_shards),
    parityShards: number(body.parity_shards),
    size: number(body.size),
    expiration: number(body.expiration_date),
    owner: string(body.owner_id),
    ownerPublicKey: string(body.owner_public_key),
    ownerSigningPublicKey: string(body.owner_signing_public_key),
    preferredBlobbers: [],
    blobberAllocs: details.map((item) => {
      const terms = (item.terms ?? {}) as Record<string, unknown>;
      return {
        blobberId: string(item.blobber_id),
        size: number(item.size),
        terms: { readPrice: coin(terms.read_price), writePrice: coin(terms.write_price) },
      };
    }),
    thirdPartyExtendable: body.third_party_extendable === true,
    fileOptions: typeof body.file_options === 'number' ? body.file_options : 63,
    writePool: coin(body.write_pool),
    readPriceRange: range(body.read_price_range),
    writePriceRange: range(body.write_price_range),
    startTime: number(body.start_time),
    finalized: body.finalized === true,
    canceled: body.canceled === true,
    movedToChallenge: coin(body.moved_to_challenge),
    movedBack: coin(body.moved_back),
    timeUnitSeconds: timeUnitNanoseconds > 0 ? timeUnitNanoseconds / 1_000_000_000 : settings.timeUnitSeconds,
    isEnterprise: body.is_enterprise === true,
    storageVersion: number(body.storage_version),
  };
}

// --- REST reads that compute (handler.go) ---

interface AllocationBlobbersRequest {
  dataShards: number;
  parityShards: number;
  size: number;
  readPriceRange: { min: bigint; max: bigint };
  writePriceRange: { min: bigint; max: bigint };
  isRestricted: number;
  storageVersion: number;
}

/**
 * storagesc handler.go `getAllocationBlobbers`/`getBlobbersForRequest`: ids of the blobbers that fit
 * the request (prices, free capacity, stake, health, not killed, shut down or unavailable, the
 * restriction filter 0 any / 1 restricted only / 2 unrestricted only, and the storage version).
 */
export function allocationBlobbers(
  contract: StorageContract,
  query: { data: string; force: boolean; limit: number; offset: number; now: number },
): string[] | ChainError {
  let request: AllocationBlobbersRequest;
  try {
    const reader = readGoStruct('storagesc.allocationBlobbersRequest', parseJson(query.data));
    request = {
      dataShards: Number(reader.integer('data_shards', 'int')),
      parityShards: Number(reader.integer('parity_shards', 'int')),
      size: Number(reader.integer('size', 'int64')),
      readPriceRange: readPriceRange(reader, 'read_price_range', 'allocationBlobbersRequest'),
      writePriceRange: readPriceRange(reader, 'write_price_range', 'allocationBlobbersRequest'),
      isRestricted: Number(reader.integer('is_restricted', 'int')),
      storageVersion: Number(reader.integer('storage_version', 'int')),
    };
  } catch (error) {
    return new ChainError(`can't decode allocation request: ${(error as Error).message}`, 'internal_error');
  }

  const settings = contract.settings();
  const wanted = request.dataShards + request.parityShards;
  if (wanted > settings.maxBlobbersPerAllocation) {
    return new ChainError(
      `Too many blobbers selected, max available ${settings.maxBlobbersPerAllocation}`,
      'allocation_creation_failed',
    );
  }
  if (request.dataShards <= 0 || request.parityShards < 0) {
    return new ChainError(
      `invalid data shards:${request.dataShards} or parity shards:${request.parityShards}`,
      'allocation_creation_failed',
    );
  }

  const size = blobberSize(request.size, request.dataShards);
  const now = query.now;
  const matching = [...contract.blobbers.values()].filter((blobber) => {
    const healthy = (blobber.lastHealthCheck ?? now) > now - settings.healthCheckPeriodSeconds;
    const restricted =
      request.isRestricted === 0 ||
      (request.isRestricted === 1 ? blobber.isRestricted : !blobber.isRestricted);
    const version = request.storageVersion === 0 || blobber.storageVersion === request.storageVersion;
    const freeStake = blobber.totalStake - blobber.totalOffers;
    const stakeCovers = Number(freeStake) >= (size / GIB) * Number(blobber.writePrice);
    return (
      request.readPriceRange.min <= blobber.readPrice &&
      blobber.readPrice <= request.readPriceRange.max &&
      request.writePriceRange.min <= blobber.writePrice &&
      blobber.writePrice <= request.writePriceRange.max &&
      blobber.capacity - blobber.allocated >= size &&
      healthy &&
      stakeCovers &&
      !blobber.isKilled &&
      !blobber.isShutdown &&
      !blobber.notAvailable &&
      restricted &&
      version
    );
  });
  const ids = matching.slice(query.offset, query.offset + query.limit).map((blobber) => blobber.id);
  if (ids.length < wanted && !query.force) {
    return new ChainError(`not enough blobbers to honor the allocation : ${ids.length} < ${wanted}`);
  }
  return ids;
}

/**
 * storagesc handler.go `getAllocationUpdateMinLock`: the lock an update needs, from the sharder's
 * view of the allocation, plus 5% ("extra 5% to deal with race condition"). When extending it uses
 * the blobbers' current prices without the max-price cap, as the handler does.
 */
export function allocationUpdateMinLock(
  contract: StorageContract,
  data: string,
  now: number,
): bigint | ChainError {
  let request: UpdateAllocationInput;
  try {
    request = decodeUpdateAllocation(parseJson(data));
  } catch (error) {
    return new ChainError(`can't decode allocation request: ${(error as Error).message}`, 'internal_error');
  }
  if (request.size > 0) {
    request.extend = true;
  } else if (request.size < 0) {
    return new ChainError('invalid size', 'invalid_request');
  }
  const stored = contract.findAllocation(request.id, false);
  if (stored === undefined) {
    return new ChainError(
      `error retrieving allocation: ${request.id}, error: record not found`,
      'invalid_request',
    );
  }
  const allocation = structuredClone(stored);
  allocation.size += request.size;
  if (allocation.expiration < now) {
    return new ChainError('allocation expired', 'invalid_request');
  }
  if (request.extend) {
    allocation.expiration = now + contract.settings().timeUnitSeconds;
  }
  const size = blobberSize(allocation.size, allocation.dataShards);
  for (const item of allocation.blobberAllocs) {
    item.size = size;
  }

  const settings = contract.settings();
  if (request.removeBlobberId !== '') {
    const removed = allocation.blobberAllocs.find((item) => item.blobberId === request.removeBlobberId);
    const cost = allocationCost(allocation.blobberAllocs);
    const charge = BigInt(Math.trunc(Number(cost) * settings.cancellationCharge));
    const total = allocation.blobberAllocs.reduce((sum, item) => sum + Number(item.terms.writePrice), 0);
    if (removed !== undefined && total > 0) {
      const share = BigInt(Math.trunc(Number(charge) * (Number(removed.terms.writePrice) / total)));
      if (share > allocation.writePool) {
        // The handler fails here with currency.MinusCoin's error, whose text was not read.
        return new ChainError('negative coin value', 'internal_error');
      }
      allocation.writePool -= share;
    }
  }
  if (request.extend) {
    for (const item of allocation.blobberAllocs) {
      const blobber = contract.blobbers.get(item.blobberId);
      if (blobber !== undefined) {
        item.terms = { readPrice: blobber.readPrice, writePrice: blobber.writePrice };
      }
    }
  }

  if (request.addBlobberId === '') {
    if (request.removeBlobberId !== '') {
      return new ChainError('could not remove blobber without adding a new one', 'invalid_request');
    }
  } else {
    if (allocation.blobberAllocs.some((item) => item.blobberId === request.addBlobberId)) {
      return new ChainError(`allocation already has blobber ${request.addBlobberId}`, 'invalid_request');
    }
    const added = contract.blobbers.get(request.addBlobberId);
    if (added === undefined) {
      return new ChainError(
        `could not load blobber from event db: error retrieving blobber ${request.addBlobberId}, error record not found`,
        'invalid_request',
      );
    }
    const addedAlloc = { blobberId: added.id, size, terms: cappedTerms(added, settings) };
    const index = allocation.blobberAllocs.findIndex((item) => item.blobberId === request.removeBlobberId);
    if (request.removeBlobberId !== '') {
      if (index < 0) {
        return new ChainError(
          `cannot find blobber ${request.removeBlobberId} in allocation`,
          'invalid_request',
        );
      }
      allocation.blobberAllocs[index] = addedAlloc;
    } else {
      allocation.parityShards += 1;
      allocation.blobberAllocs.push(addedAlloc);
    }
  }

  // The handler's own copy of the formula: no "hercules" unused-space term.
  const after =
    request.extend || allocation.isEnterprise
      ? allocationCost(allocation.blobberAllocs)
      : restOfPeriodCost(allocation, now);
  const required = after > allocation.writePool ? after - allocation.writePool : 0n;
  return BigInt(Math.trunc(Number(required) * 1.05));
}
