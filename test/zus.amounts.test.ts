import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatDecimal, formatZcn, parseDecimal, SAS_PER_ZCN, zcnToSas } from '../src/core/zus/amounts.js';

describe('zcnToSas', () => {
  const cases: Array<[string, bigint]> = [
    ['0', 0n],
    ['1', SAS_PER_ZCN],
    ['0.025', 250_000_000n],
    ['0.001', 10_000_000n],
    ['0.0000000001', 1n],
    ['0.10000000000000', 1_000_000_000n],
    ['2e+06', 2_000_000n * SAS_PER_ZCN],
    ['1e+07', 10_000_000n * SAS_PER_ZCN],
    ['1.5E-3', 15_000_000n],
    ['1e-10', 1n],
    ['-3', -3n * SAS_PER_ZCN],
    ['-0', 0n],
    ['+7.5', 75_000_000_000n],
    ['.5', 5_000_000_000n],
    ['5.', 5n * SAS_PER_ZCN],
    ['123456789.0123456789', 1_234_567_890_123_456_789n],
  ];
  for (const [text, expected] of cases) {
    test(`converts ${text}`, () => {
      assert.equal(zcnToSas(text), expected);
    });
  }

  test('keeps precision a float would lose', () => {
    // 0.1 + 0.2 in binary floating point is 0.30000000000000004.
    assert.equal(zcnToSas('0.3'), 3_000_000_000n);
    assert.equal(zcnToSas('9007199.2547409931'), 90_071_992_547_409_931n);
  });

  test('rejects more than 10 decimal places', () => {
    assert.throws(
      () => zcnToSas('0.00000000001'),
      /more than 10 decimal places.*1 SAS .* is the smallest unit/,
    );
    assert.throws(() => zcnToSas('1e-11'), /smallest unit/);
  });

  test('rejects non-numeric text', () => {
    for (const text of ['', '.', 'abc', '1,5', '0x10', '1e', '--1', ' 1', '1 ', '1e+']) {
      assert.throws(() => zcnToSas(text), /invalid number/, `accepted ${JSON.stringify(text)}`);
    }
  });

  test('rejects values that are not finite', () => {
    for (const text of ['Infinity', '-Inf', '+Inf', 'NaN']) {
      assert.throws(() => zcnToSas(text), /not finite/, `accepted ${text}`);
    }
  });

  test('rejects an out-of-range exponent', () => {
    assert.throws(() => zcnToSas('1e999999999'), /exponent is out of range/);
  });
});

describe('formatZcn', () => {
  test('trims trailing zeros', () => {
    assert.equal(formatZcn(250_000_000n), '0.025');
    assert.equal(formatZcn(SAS_PER_ZCN), '1');
    assert.equal(formatZcn(0n), '0');
    assert.equal(formatZcn(1n), '0.0000000001');
    assert.equal(formatZcn(-15_000_000n), '-0.0015');
  });

  test('round-trips through zcnToSas', () => {
    for (const sas of [0n, 1n, 999n, 250_000_000n, 20_000_000_000_000_000n, -123_456_789_012n]) {
      assert.equal(zcnToSas(formatZcn(sas)), sas);
    }
  });
});

describe('formatDecimal', () => {
  test('writes exponent forms as plain decimals', () => {
    assert.equal(formatDecimal(parseDecimal('1e-05')), '0.00001');
    assert.equal(formatDecimal(parseDecimal('2e+06')), '2000000');
    assert.equal(formatDecimal(parseDecimal('0.200')), '0.2');
    assert.equal(formatDecimal(parseDecimal('-0.0')), '0');
    assert.equal(formatDecimal(parseDecimal('-1.50')), '-1.5');
  });
});
