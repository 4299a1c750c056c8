/**
 * Exact conversions between ZCN, the token unit people read, and SAS, the integer unit the chain
 * stores (1 ZCN = 10^10 SAS). Amounts never pass through a float: the chain's REST responses format
 * ZCN with Go's `%v` (for example `2e+06`, `0.025`), and a float would round the last SAS.
 */

export const SAS_PER_ZCN = 10_000_000_000n;

/** Decimal places of one SAS in ZCN. */
export const ZCN_DECIMALS = 10;

/** Largest exponent accepted, so that a hostile `1e999999999` cannot build a huge bigint. */
const MAX_EXPONENT = 1000;

/** A decimal number as an integer and a power of ten: value = units / 10^scale (scale may be negative). */
export interface ExactDecimal {
  units: bigint;
  scale: number;
}

const DECIMAL_TEXT = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;
const NON_FINITE_TEXT = /^[+-]?(inf|infinity|nan)$/i;

/**
 * Parses decimal text such as `0.025`, `-3`, `2e+06` or `1.5E-3` into an exact decimal.
 * Throws an Error naming the text when it is empty, not a number, or not finite.
 */
export function parseDecimal(text: string): ExactDecimal {
  if (NON_FINITE_TEXT.test(text)) {
    throw new Error(`invalid number "${text}": the value is not finite`);
  }
  const match = DECIMAL_TEXT.exec(text);
  const [, sign = '', integerDigits = '', fractionDigits = '', exponentText] = match ?? [];
  if (match === null || integerDigits.length + fractionDigits.length === 0) {
    throw new Error(`invalid number "${text}": expected decimal digits such as 0.025 or 2e+06`);
  }

  const exponent = exponentText === undefined ? 0 : Number.parseInt(exponentText, 10);
  if (Math.abs(exponent) > MAX_EXPONENT) {
    throw new Error(`invalid number "${text}": the exponent is out of range (at most ±${MAX_EXPONENT})`);
  }

  const magnitude = BigInt(`${integerDigits}${fractionDigits}` || '0');
  return { units: sign === '-' ? -magnitude : magnitude, scale: fractionDigits.length - exponent };
}

/** Rescales an exact decimal to `scale` decimal places, or returns undefined when that would drop non-zero digits. */
export function rescaleDecimal(value: ExactDecimal, scale: number): bigint | undefined {
  if (scale >= value.scale) {
    return value.units * 10n ** BigInt(scale - value.scale);
  }
  const divisor = 10n ** BigInt(value.scale - scale);
  if (value.units % divisor !== 0n) {
    return undefined;
  }
  return value.units / divisor;
}

/**
 * Converts decimal ZCN text to SAS exactly. Accepts a leading sign and exponent forms (`2e+06`,
 * `1.5E-3`). Throws an Error when the text is not a finite number or has a non-zero digit below
 * 10^-10 ZCN, because one SAS is the smallest unit and the value cannot be represented.
 */
export function zcnToSas(text: string): bigint {
  const sas = rescaleDecimal(parseDecimal(text), ZCN_DECIMALS);
  if (sas === undefined) {
    throw new Error(
      `invalid ZCN amount "${text}": more than ${ZCN_DECIMALS} decimal places, but 1 SAS (0.0000000001 ZCN) is the smallest unit`,
    );
  }
  return sas;
}

/** Formats SAS as exact ZCN text for display, without trailing zeros: 250000000n gives `0.025`. */
export function formatZcn(sas: bigint): string {
  const sign = sas < 0n ? '-' : '';
  const magnitude = sas < 0n ? -sas : sas;
  const whole = magnitude / SAS_PER_ZCN;
  const fraction = (magnitude % SAS_PER_ZCN).toString().padStart(ZCN_DECIMALS, '0').replace(/0+$/, '');
  return fraction === '' ? `${sign}${whole}` : `${sign}${whole}.${fraction}`;
}

/** Formats an exact decimal as plain text without an exponent or trailing zeros: `1e-05` gives `0.00001`. */
export function formatDecimal(value: ExactDecimal): string {
  if (value.scale <= 0) {
    return (value.units * 10n ** BigInt(-value.scale)).toString();
  }
  const sign = value.units < 0n ? '-' : '';
  const digits = (value.units < 0n ? -value.units : value.units).toString().padStart(value.scale + 1, '0');
  const whole = digits.slice(0, digits.length - value.scale);
  const fraction = digits.slice(digits.length - value.scale).replace(/0+$/, '');
  const text = fraction === '' ? whole : `${whole}.${fraction}`;
  return text === '0' ? '0' : `${sign}${text}`;
}
