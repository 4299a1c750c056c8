/**
 * Reed–Solomon erasure coding over GF(2^8), byte-compatible with the default encoder of
 * klauspost/reedsolomon (`reedsolomon.New(d, p)` without options, v1.11.8), which the Go SDK uses
 * to upload and download files on Züs:
 *
 * - the field is GF(2^8) with the generating polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11D);
 * - the encoding matrix starts as the (d + p) × d Vandermonde matrix with entry r^c in row r and
 *   column c (0^0 = 1), and is multiplied by the inverse of its top d × d square, so its top is the
 *   identity and any d of its rows are invertible;
 * - parity shard i is row d + i of that matrix times the data shards.
 *
 * Sources: klauspost/reedsolomon reedsolomon.go (`New`, `buildMatrix`), matrix.go (`vandermonde`,
 * `Invert`), galois.go. More than 256 shards would switch klauspost to its Leopard GF(2^16) codec,
 * which this module does not implement.
 *
 * The second half of the file holds the blobber layout that the Go SDK's chunked upload produces:
 * 64 KiB blocks, rows of d blocks, the last row split into d equal, zero-padded pieces.
 */

// ---------------------------------------------------------------------------------------------
// GF(2^8)
// ---------------------------------------------------------------------------------------------

const GENERATING_POLYNOMIAL = 0x11d;

/** EXP[i] = 2^i, doubled in length so that EXP[LOG[a] + LOG[b]] needs no modulo. */
const EXP = new Uint8Array(510);
/** LOG[a] = i with 2^i = a, for a ≠ 0. */
const LOG = new Uint8Array(256);

{
  let value = 1;
  for (let power = 0; power < 255; power += 1) {
    EXP[power] = value;
    EXP[power + 255] = value;
    LOG[value] = power;
    value <<= 1;
    if (value & 0x100) {
      value ^= GENERATING_POLYNOMIAL;
    }
  }
}

/** MULTIPLY[a * 256 + b] = a · b. 64 KiB, so a row of it (one factor fixed) is a 256-byte lookup table. */
const MULTIPLY = new Uint8Array(256 * 256);

for (let a = 1; a < 256; a += 1) {
  for (let b = 1; b < 256; b += 1) {
    MULTIPLY[a * 256 + b] = EXP[(LOG[a] ?? 0) + (LOG[b] ?? 0)] ?? 0;
  }
}

/** Multiplies two field elements. */
export function gfMultiply(a: number, b: number): number {
  return MULTIPLY[(a << 8) | b] ?? 0;
}

function gfInverse(a: number): number {
  if (a === 0) {
    throw new RangeError('zero has no inverse in GF(2^8)');
  }
  return EXP[255 - (LOG[a] ?? 0)] ?? 0;
}

/** Raises a field element to a non-negative integer power, with 0^0 = 1 as klauspost's `galExp`. */
function gfPower(a: number, exponent: number): number {
  if (exponent === 0) {
    return 1;
  }
  if (a === 0) {
    return 0;
  }
  return EXP[((LOG[a] ?? 0) * exponent) % 255] ?? 0;
}

/** Returns the 256-byte table of `coefficient · x` for every byte x. */
function multiplicationRow(coefficient: number): Uint8Array {
  return MULTIPLY.subarray(coefficient << 8, (coefficient << 8) + 256);
}

// ---------------------------------------------------------------------------------------------
// Small matrices over GF(2^8)
// ---------------------------------------------------------------------------------------------

type Matrix = Uint8Array[];

function newMatrix(rows: number, columns: number): Matrix {
  return Array.from({ length: rows }, () => new Uint8Array(columns));
}

function multiplyMatrices(left: Matrix, right: Matrix): Matrix {
  const inner = right.length;
  const columns = right[0]?.length ?? 0;
  const result = newMatrix(left.length, columns);
  left.forEach((leftRow, r) => {
    const out = result[r] as Uint8Array;
    for (let c = 0; c < columns; c += 1) {
      let value = 0;
      for (let i = 0; i < inner; i += 1) {
        value ^= gfMultiply(leftRow[i] ?? 0, right[i]?.[c] ?? 0);
      }
      out[c] = value;
    }
  });
  return result;
}

/** Inverts a square matrix by Gauss–Jordan elimination. Throws a RangeError when it is singular. */
function invertMatrix(matrix: Matrix): Matrix {
  const size = matrix.length;
  const work: Matrix = matrix.map((row, r) => {
    const augmented: Uint8Array = new Uint8Array(size * 2);
    augmented.set(row);
    augmented[size + r] = 1;
    return augmented;
  });
  const rowAt = (index: number) => work[index] as Uint8Array;

  for (let column = 0; column < size; column += 1) {
    if (rowAt(column)[column] === 0) {
      const below = work.findIndex((row, r) => r > column && row[column] !== 0);
      if (below === -1) {
        throw new RangeError('the matrix is singular');
      }
      [work[column], work[below]] = [rowAt(below), rowAt(column)];
    }
    const pivotRow = rowAt(column);
    const scale = gfInverse(pivotRow[column] ?? 0);
    for (let c = 0; c < size * 2; c += 1) {
      pivotRow[c] = gfMultiply(pivotRow[c] ?? 0, scale);
    }
    for (let r = 0; r < size; r += 1) {
      const row = rowAt(r);
      const factor = row[column] ?? 0;
      if (r === column || factor === 0) {
        continue;
      }
      for (let c = 0; c < size * 2; c += 1) {
        row[c] = (row[c] ?? 0) ^ gfMultiply(factor, pivotRow[c] ?? 0);
      }
    }
  }
  return work.map((row) => row.slice(size));
}

/**
 * Builds klauspost's default encoding matrix: Vandermonde rows r^c for r in 0..total-1 and c in
 * 0..data-1, times the inverse of the top square.
 */
function buildEncodingMatrix(dataShards: number, totalShards: number): Matrix {
  const vandermonde = newMatrix(totalShards, dataShards);
  vandermonde.forEach((row, r) => {
    for (let c = 0; c < dataShards; c += 1) {
      row[c] = gfPower(r, c);
    }
  });
  const topInverse = invertMatrix(vandermonde.slice(0, dataShards));
  return multiplyMatrices(vandermonde, topInverse);
}

// ---------------------------------------------------------------------------------------------
// The codec
// ---------------------------------------------------------------------------------------------

/** Fewer than `dataShards` shards are present, so the missing ones cannot be rebuilt. */
export class TooFewShardsError extends Error {
  override name = 'TooFewShardsError';
}

/**
 * A systematic Reed–Solomon code with `dataShards` data and `parityShards` parity shards. All
 * shards of one call have the same length. Methods work on whole byte arrays and allocate only
 * the outputs the caller does not supply.
 */
export class ReedSolomon {
  readonly dataShards: number;
  readonly parityShards: number;
  readonly totalShards: number;
  /** Row k contains the coefficients of shard k over the data shards. Rows 0..d-1 are the identity. */
  readonly #matrix: Matrix;
  /** Inverted sub-matrices by the shard indices they were built from, for reconstruction. */
  readonly #decodeMatrices = new Map<string, Matrix>();

  constructor(dataShards: number, parityShards: number) {
    if (!Number.isInteger(dataShards) || dataShards < 1) {
      throw new RangeError(`invalid data shard count ${dataShards}: expected an integer of at least 1`);
    }
    if (!Number.isInteger(parityShards) || parityShards < 0) {
      throw new RangeError(`invalid parity shard count ${parityShards}: expected a non-negative integer`);
    }
    if (dataShards + parityShards > 256) {
      throw new RangeError(
        `${dataShards} data + ${parityShards} parity shards exceed 256, which needs klauspost's Leopard GF(2^16) codec (not implemented)`,
      );
    }
    this.dataShards = dataShards;
    this.parityShards = parityShards;
    this.totalShards = dataShards + parityShards;
    this.#matrix = buildEncodingMatrix(dataShards, this.totalShards);
  }

  /** Returns the coefficients of parity shard `parityIndex` (0-based) over the data shards. */
  parityCoefficients(parityIndex: number): Uint8Array {
    const row = this.#matrix[this.dataShards + parityIndex];
    if (row === undefined) {
      throw new RangeError(`no parity shard ${parityIndex}: the code has ${this.parityShards}`);
    }
    return row.slice();
  }

  /**
   * Computes the parity shards from the data shards. `shards` contains d + p arrays of one length,
   * data first, and the parity arrays are overwritten.
   */
  encode(shards: readonly Uint8Array[]): void {
    if (shards.length !== this.totalShards) {
      throw new RangeError(`expected ${this.totalShards} shards, got ${shards.length}`);
    }
    const data = shards.slice(0, this.dataShards);
    const length = commonLength(shards);
    for (let index = this.dataShards; index < this.totalShards; index += 1) {
      this.computeShard(index, data, (shards[index] as Uint8Array).subarray(0, length));
    }
  }

  /**
   * Writes shard `index` (data or parity) computed from the d data shards into `out`, which has
   * their length. A data shard is copied.
   */
  computeShard(index: number, data: readonly Uint8Array[], out: Uint8Array): void {
    const row = this.#matrix[index];
    if (row === undefined) {
      throw new RangeError(`no shard ${index}: the code has ${this.totalShards}`);
    }
    if (data.length !== this.dataShards) {
      throw new RangeError(`expected ${this.dataShards} data shards, got ${data.length}`);
    }
    combine(row, data, out);
  }

  /**
   * Rebuilds the missing data shards in place. `shards` has d + p entries, `undefined` where a
   * shard is missing; the present ones have one length. The first d present shards (by index) are
   * used. A rebuilt shard is written into `targets[index]` when given (it must have that length),
   * otherwise into a new array, and is then set in `shards`. Missing parity shards stay missing.
   * Throws TooFewShardsError when fewer than d shards are present.
   */
  reconstructData(
    shards: Array<Uint8Array | undefined>,
    targets: ReadonlyArray<Uint8Array | undefined> = [],
  ): void {
    if (shards.length !== this.totalShards) {
      throw new RangeError(`expected ${this.totalShards} shard slots, got ${shards.length}`);
    }
    const missingData: number[] = [];
    for (let index = 0; index < this.dataShards; index += 1) {
      if (shards[index] === undefined) {
        missingData.push(index);
      }
    }
    if (missingData.length === 0) {
      return;
    }

    const present = shards.flatMap((shard, index) => (shard === undefined ? [] : [index]));
    if (present.length < this.dataShards) {
      throw new TooFewShardsError(
        `${present.length} of ${this.totalShards} shards are present, but ${this.dataShards} are needed to rebuild the data`,
      );
    }
    const basis = present.slice(0, this.dataShards);
    const inputs = basis.map((index) => shards[index] as Uint8Array);
    const length = commonLength(inputs);
    const decode = this.#decodeMatrix(basis);

    for (const index of missingData) {
      const target = targets[index] ?? new Uint8Array(length);
      if (target.length !== length) {
        throw new RangeError(`target for shard ${index} has ${target.length} bytes, expected ${length}`);
      }
      combine(decode[index] as Uint8Array, inputs, target);
      shards[index] = target;
    }
  }

  /** Returns the inverse of the encoding rows at `basis`: it maps those shards back to the data. */
  #decodeMatrix(basis: readonly number[]): Matrix {
    const key = basis.join(',');
    let decode = this.#decodeMatrices.get(key);
    if (decode === undefined) {
      decode = invertMatrix(basis.map((index) => this.#matrix[index] as Uint8Array));
      this.#decodeMatrices.set(key, decode);
    }
    return decode;
  }
}

/** Returns the length every shard shares, or throws a RangeError when they differ. */
function commonLength(shards: readonly Uint8Array[]): number {
  const length = shards[0]?.length ?? 0;
  for (const shard of shards) {
    if (shard.length !== length) {
      throw new RangeError(`shards differ in length: ${shard.length} and ${length} bytes`);
    }
  }
  return length;
}

/** Writes Σ coefficients[j] · inputs[j] into `out`, byte by byte, with one table lookup per input byte. */
function combine(coefficients: Uint8Array, inputs: readonly Uint8Array[], out: Uint8Array): void {
  const length = out.length;
  let written = false;
  inputs.forEach((input, j) => {
    const coefficient = coefficients[j] ?? 0;
    if (coefficient === 0) {
      return;
    }
    if (input.length < length) {
      throw new RangeError(`input shard ${j} has ${input.length} bytes, expected ${length}`);
    }
    if (coefficient === 1) {
      if (written) {
        for (let i = 0; i < length; i += 1) {
          out[i] = (out[i] as number) ^ (input[i] as number);
        }
      } else {
        out.set(input.subarray(0, length));
      }
    } else {
      const table = multiplicationRow(coefficient);
      if (written) {
        for (let i = 0; i < length; i += 1) {
          out[i] = (out[i] as number) ^ (table[input[i] as number] as number);
        }
      } else {
        for (let i = 0; i < length; i += 1) {
          out[i] = table[input[i] as number] as number;
        }
      }
    }
    written = true;
  });
  if (!written) {
    out.fill(0);
  }
}

// ---------------------------------------------------------------------------------------------
// Blobber layout
// ---------------------------------------------------------------------------------------------

/**
 * Size of one block of a blobber's shard file, 64 KiB. The blobber reads `X-Num-Blocks` blocks of
 * this size from `X-Block-Num` × this offset (0chain/blobber filestore/storage.go `ChunkSize`), and
 * the Go SDK uploads with the same chunk size (gosdk zboxcore/sdk/chunked_upload.go
 * `DefaultChunkSize`).
 */
export const BLOCK_SIZE_BYTES = 64 * 1024;

/** Layout of an unencrypted file's bytes on its blobbers. */
export interface ShardLayout {
  fileSizeBytes: number;
  dataShards: number;
  /** Rows of d blocks: ceil(size / (d × 64 KiB)); block b of every blobber belongs to row b. */
  rows: number;
  /** File bytes in the last row (a full row contains d × 64 KiB). */
  lastRowBytes: number;
  /** Length of each blobber's piece of the last row: ceil(lastRowBytes / d), zero-padded. */
  lastPieceBytes: number;
  /** Size of every blobber's shard file: (rows − 1) × 64 KiB + lastPieceBytes. */
  shardSizeBytes: number;
}

/**
 * Computes the layout of the Go SDK's chunked upload for an unencrypted file (gosdk
 * chunked_upload_chunk_reader.go `Next`, chunked_upload.go `getShardSize`). The file is cut into
 * rows of d × 64 KiB. Each row is split into d equal pieces, the last one zero-padded, as
 * klauspost's `Split` does.
 */
export function shardLayout(fileSizeBytes: number, dataShards: number): ShardLayout {
  if (!Number.isSafeInteger(fileSizeBytes) || fileSizeBytes < 0) {
    throw new RangeError(`invalid file size ${fileSizeBytes}: expected a non-negative integer`);
  }
  if (!Number.isInteger(dataShards) || dataShards < 1) {
    throw new RangeError(`invalid data shard count ${dataShards}: expected an integer of at least 1`);
  }
  const rowBytes = dataShards * BLOCK_SIZE_BYTES;
  const rows = Math.ceil(fileSizeBytes / rowBytes);
  const lastRowBytes = rows === 0 ? 0 : fileSizeBytes - (rows - 1) * rowBytes;
  const lastPieceBytes = Math.ceil(lastRowBytes / dataShards);
  const shardSizeBytes = rows === 0 ? 0 : (rows - 1) * BLOCK_SIZE_BYTES + lastPieceBytes;
  return { fileSizeBytes, dataShards, rows, lastRowBytes, lastPieceBytes, shardSizeBytes };
}

/** Returns the length of every blobber's piece of row `row`. */
export function pieceBytes(layout: ShardLayout, row: number): number {
  return row === layout.rows - 1 ? layout.lastPieceBytes : BLOCK_SIZE_BYTES;
}

/**
 * Encodes a whole file into the shard file of each blobber, data shards first, as the Go SDK
 * uploads it. It holds the file and all shards in memory, so it is meant for fakes and tests.
 */
export function encodeBlobberShards(
  content: Uint8Array,
  dataShards: number,
  parityShards: number,
): Uint8Array[] {
  const codec = new ReedSolomon(dataShards, parityShards);
  const layout = shardLayout(content.length, dataShards);
  const shards = Array.from({ length: codec.totalShards }, () => new Uint8Array(layout.shardSizeBytes));

  for (let row = 0; row < layout.rows; row += 1) {
    const rowStart = row * dataShards * BLOCK_SIZE_BYTES;
    const pieceLength = pieceBytes(layout, row);
    const shardOffset = row * BLOCK_SIZE_BYTES;
    const pieces = shards.map((shard) => shard.subarray(shardOffset, shardOffset + pieceLength));

    pieces.slice(0, dataShards).forEach((piece, j) => {
      const start = Math.min(rowStart + j * pieceLength, content.length);
      const end = Math.min(start + pieceLength, content.length);
      // The rest of the piece stays zero: the padding of the last row.
      piece.set(content.subarray(start, end));
    });
    codec.encode(pieces);
  }
  return shards;
}
