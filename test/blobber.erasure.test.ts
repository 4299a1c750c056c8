import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  BLOCK_SIZE_BYTES,
  encodeBlobberShards,
  gfMultiply,
  pieceBytes,
  ReedSolomon,
  shardLayout,
  TooFewShardsError,
} from '../src/core/blobber/erasure.js';

// ---------------------------------------------------------------------------------------------
// Reference vectors of the Go encoder
// ---------------------------------------------------------------------------------------------

interface VectorPiece {
  row: number;
  len: number;
  sha256: string;
  hex?: string;
}

interface VectorShard {
  index: number;
  kind: 'data' | 'parity';
  total_len: number;
  sha256: string;
  hex?: string;
  pieces: VectorPiece[];
}

interface VectorCase {
  name: string;
  data_shards: number;
  parity_shards: number;
  input_len: number;
  input_sha256: string;
  input_hex?: string;
  rows: number;
  last_row_len: number;
  last_piece_len: number;
  shards: VectorShard[];
}

interface VectorFile {
  generator: { library: string };
  input_rule: string;
  parity_matrix_rows: Record<string, number[][]>;
  cases: VectorCase[];
}

/**
 * Reads rs-vectors.json from the folder in ZUS_REFERENCE_DATA: shards made by
 * klauspost/reedsolomon's default encoder in the blobber layout (its `generator` field names the
 * versions).
 */
function loadVectors(): VectorFile | { skip: string } {
  const folder = process.env.ZUS_REFERENCE_DATA;
  if (folder === undefined || folder === '') {
    return {
      skip: 'ZUS_REFERENCE_DATA is not set: it names the folder of Züs reference vectors (.ci/run sets it)',
    };
  }
  return JSON.parse(readFileSync(join(folder, 'rs-vectors.json'), 'utf8')) as VectorFile;
}

const vectors = loadVectors();

/** Builds the vectors' input: byte i is (7i + 3) mod 256. */
function vectorInput(length: number): Uint8Array {
  const input = new Uint8Array(length);
  for (let index = 0; index < length; index += 1) {
    input[index] = (index * 7 + 3) % 256;
  }
  return input;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

/** Lists every subset of `0..count-1` with at least `minimum` members. */
function subsetsOfAtLeast(count: number, minimum: number): number[][] {
  const subsets: number[][] = [];
  for (let mask = 0; mask < 1 << count; mask += 1) {
    const members = Array.from({ length: count }, (_unused, index) => index).filter(
      (index) => mask & (1 << index),
    );
    if (members.length >= minimum) {
      subsets.push(members);
    }
  }
  return subsets;
}

describe('Go encoder vectors', () => {
  if ('skip' in vectors) {
    test('reference vectors', (t) => {
      t.skip(vectors.skip);
    });
    return;
  }

  test('parity matrix rows match', () => {
    for (const [shape, rows] of Object.entries(vectors.parity_matrix_rows)) {
      const [dataShards, parityShards] = shape.split('+').map(Number) as [number, number];
      const codec = new ReedSolomon(dataShards, parityShards);
      rows.forEach((row, parityIndex) => {
        assert.deepEqual(
          Array.from(codec.parityCoefficients(parityIndex)),
          row,
          `${shape} parity row ${parityIndex}`,
        );
      });
    }
  });

  for (const vector of vectors.cases) {
    test(`shards of ${vector.name} match byte for byte`, () => {
      const input = vectorInput(vector.input_len);
      assert.equal(sha256(input), vector.input_sha256, 'input rule');
      const shards = encodeBlobberShards(input, vector.data_shards, vector.parity_shards);
      assert.equal(shards.length, vector.shards.length);

      const layout = shardLayout(vector.input_len, vector.data_shards);
      assert.equal(layout.rows, vector.rows);
      assert.equal(layout.lastRowBytes, vector.last_row_len);
      assert.equal(layout.lastPieceBytes, vector.last_piece_len);

      for (const expected of vector.shards) {
        const shard = shards[expected.index] as Uint8Array;
        assert.equal(shard.length, expected.total_len, `shard ${expected.index} length`);
        if (expected.hex !== undefined) {
          assert.equal(hex(shard), expected.hex, `shard ${expected.index} bytes`);
        }
        assert.equal(sha256(shard), expected.sha256, `shard ${expected.index} sha256`);
        for (const piece of expected.pieces) {
          const offset = piece.row * BLOCK_SIZE_BYTES;
          const bytes = shard.subarray(offset, offset + piece.len);
          assert.equal(sha256(bytes), piece.sha256, `shard ${expected.index} row ${piece.row} sha256`);
        }
      }
    });
  }

  for (const vector of vectors.cases.filter((item) => item.input_hex !== undefined)) {
    test(`${vector.name} rebuilds from every allowed subset`, () => {
      const codec = new ReedSolomon(vector.data_shards, vector.parity_shards);
      const goShards = vector.shards.map((shard) => new Uint8Array(Buffer.from(shard.hex ?? '', 'hex')));
      const expectedData = goShards.slice(0, vector.data_shards).map(hex);
      const subsets = subsetsOfAtLeast(codec.totalShards, codec.dataShards);

      for (const subset of subsets) {
        const shards: Array<Uint8Array | undefined> = goShards.map((shard, index) =>
          subset.includes(index) ? shard : undefined,
        );
        codec.reconstructData(shards);
        const rebuilt = shards.slice(0, vector.data_shards).map((shard) => hex(shard as Uint8Array));
        assert.deepEqual(rebuilt, expectedData, `from shards ${subset.join(',')}`);
      }
      const joined = Buffer.concat(goShards.slice(0, vector.data_shards)).subarray(0, vector.input_len);
      assert.equal(joined.toString('hex'), vector.input_hex);
    });
  }

  for (const vector of vectors.cases.filter((item) => item.input_hex === undefined)) {
    test(`${vector.name} rebuilds without the first data shards`, () => {
      const codec = new ReedSolomon(vector.data_shards, vector.parity_shards);
      const input = vectorInput(vector.input_len);
      const shards = encodeBlobberShards(input, vector.data_shards, vector.parity_shards);
      const layout = shardLayout(vector.input_len, vector.data_shards);
      const dropped = Math.min(vector.parity_shards, vector.data_shards);

      for (let row = 0; row < layout.rows; row += 1) {
        const offset = row * BLOCK_SIZE_BYTES;
        const length = pieceBytes(layout, row);
        const pieces: Array<Uint8Array | undefined> = shards.map((shard, index) =>
          index < dropped ? undefined : shard.subarray(offset, offset + length),
        );
        codec.reconstructData(pieces);
        for (let index = 0; index < dropped; index += 1) {
          const expected = vector.shards[index]?.pieces[row]?.sha256;
          assert.equal(sha256(pieces[index] as Uint8Array), expected, `row ${row} data shard ${index}`);
        }
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Own cases
// ---------------------------------------------------------------------------------------------

describe('ReedSolomon', () => {
  test('field multiplication', () => {
    // x · x^7 = x^8 = x^4 + x^3 + x^2 + 1 under the polynomial 0x11D.
    assert.equal(gfMultiply(2, 0x80), 0x1d);
    assert.equal(gfMultiply(0, 0x53), 0);
    assert.equal(gfMultiply(1, 0x53), 0x53);
    for (let a = 1; a < 256; a += 1) {
      const inverse = Array.from({ length: 255 }, (_unused, b) => b + 1).find((b) => gfMultiply(a, b) === 1);
      assert.notEqual(inverse, undefined, `${a} has an inverse`);
    }
  });

  test('2+1 parity is not plain XOR', () => {
    // Vandermonde rows are [1,0], [1,1] and [1,2]. The top square is its own inverse in GF(2^8),
    // so the parity row is [1,2] times it: [1 + 2, 2] = [3, 2], with + being XOR.
    assert.deepEqual(Array.from(new ReedSolomon(2, 1).parityCoefficients(0)), [3, 2]);
  });

  test('random round trips with erasures', () => {
    for (let round = 0; round < 60; round += 1) {
      const dataShards = 1 + Math.floor(Math.random() * 12);
      const parityShards = Math.floor(Math.random() * 7);
      const sizes = [0, 1, dataShards * BLOCK_SIZE_BYTES, dataShards * BLOCK_SIZE_BYTES + 1];
      const size = sizes[round % sizes.length] ?? 0;
      const content = randomBytes(round % 5 === 4 ? Math.floor(Math.random() * 400_000) : size);
      const codec = new ReedSolomon(dataShards, parityShards);
      const shards = encodeBlobberShards(content, dataShards, parityShards);
      const layout = shardLayout(content.length, dataShards);
      const out: Uint8Array[] = [];

      for (let row = 0; row < layout.rows; row += 1) {
        const offset = row * BLOCK_SIZE_BYTES;
        const length = pieceBytes(layout, row);
        const lost = new Set<number>();
        while (lost.size < Math.floor(Math.random() * (parityShards + 1))) {
          lost.add(Math.floor(Math.random() * codec.totalShards));
        }
        const pieces: Array<Uint8Array | undefined> = shards.map((shard, index) =>
          lost.has(index) ? undefined : shard.subarray(offset, offset + length),
        );
        codec.reconstructData(pieces);
        out.push(...(pieces.slice(0, dataShards) as Uint8Array[]));
      }
      const joined = Buffer.concat(out).subarray(0, content.length);
      assert.ok(joined.equals(content), `${dataShards}+${parityShards}, ${content.length} bytes`);
    }
  });

  test('parity check of encode', () => {
    const codec = new ReedSolomon(5, 3);
    const shards = Array.from({ length: 8 }, (_unused, index) =>
      index < 5 ? randomBytes(1000) : new Uint8Array(1000),
    );
    codec.encode(shards);
    const computed = new Uint8Array(1000);
    codec.computeShard(6, shards.slice(0, 5), computed);
    assert.ok(Buffer.from(computed).equals(shards[6] as Uint8Array));
  });

  test('rebuild writes into given targets', () => {
    const codec = new ReedSolomon(3, 2);
    const shards = Array.from({ length: 5 }, (_unused, index) =>
      index < 3 ? randomBytes(64) : new Uint8Array(64),
    );
    codec.encode(shards);
    const target = new Uint8Array(64);
    const pieces: Array<Uint8Array | undefined> = [undefined, shards[1], shards[2], shards[3], undefined];
    codec.reconstructData(pieces, [target]);
    assert.equal(pieces[0], target);
    assert.ok(Buffer.from(target).equals(shards[0] as Uint8Array));
  });

  test('too few shards', () => {
    const codec = new ReedSolomon(4, 2);
    const pieces: Array<Uint8Array | undefined> = [
      undefined,
      undefined,
      undefined,
      new Uint8Array(8),
      new Uint8Array(8),
      new Uint8Array(8),
    ];
    assert.throws(() => codec.reconstructData(pieces), TooFewShardsError);
  });

  test('invalid shard counts', () => {
    assert.throws(() => new ReedSolomon(0, 2), RangeError);
    assert.throws(() => new ReedSolomon(2, -1), RangeError);
    assert.throws(() => new ReedSolomon(200, 57), /Leopard/);
    assert.doesNotThrow(() => new ReedSolomon(200, 56));
  });

  test('shards of different lengths', () => {
    const codec = new ReedSolomon(2, 1);
    assert.throws(
      () => codec.encode([new Uint8Array(4), new Uint8Array(5), new Uint8Array(4)]),
      /differ in length/,
    );
  });
});

describe('shardLayout', () => {
  test('full and partial rows', () => {
    const row = 4 * BLOCK_SIZE_BYTES;
    assert.deepEqual(shardLayout(0, 4), {
      fileSizeBytes: 0,
      dataShards: 4,
      rows: 0,
      lastRowBytes: 0,
      lastPieceBytes: 0,
      shardSizeBytes: 0,
    });
    assert.equal(shardLayout(row, 4).shardSizeBytes, BLOCK_SIZE_BYTES);
    const partial = shardLayout(row + 5, 4);
    assert.equal(partial.rows, 2);
    assert.equal(partial.lastRowBytes, 5);
    assert.equal(partial.lastPieceBytes, 2);
    assert.equal(partial.shardSizeBytes, BLOCK_SIZE_BYTES + 2);
  });
});
