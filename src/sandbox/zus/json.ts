/**
 * JSON as the Go nodes read and write it: integers up to uint64 without loss, the error texts of
 * `encoding/json` for values of the wrong type, and `bigint` values written as plain digits.
 */

/** A JSON number kept as its source text, so uint64 amounts and Go's int/float distinction survive. */
export class JsonNumber {
  constructor(readonly source: string) {}
}

/** A parsed JSON value whose numbers are JsonNumber instances. */
export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | { [key: string]: JsonValue };

/** Error raised for text that is not valid JSON. */
export class JsonSyntaxError extends Error {
  override name = 'JsonSyntaxError';
}

/**
 * Parses JSON text keeping each number's source text. Throws JsonSyntaxError for invalid text.
 * Like Go's json.Decoder, only the first value counts and leading whitespace is skipped.
 */
export function parseJson(text: string): JsonValue {
  try {
    return JSON.parse(text, reviveNumber) as JsonValue;
  } catch (error) {
    throw new JsonSyntaxError(error instanceof Error ? error.message : String(error));
  }
}

function reviveNumber(this: unknown, _key: string, value: unknown, context?: { source?: string }): unknown {
  if (typeof value === 'number') {
    return new JsonNumber(context?.source ?? String(value));
  }
  return value;
}

export function isJsonObject(value: JsonValue | undefined): value is { [key: string]: JsonValue } {
  return (
    value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof JsonNumber)
  );
}

/**
 * Serialises a value as Go's json.Encoder does: compact, `bigint` as digits, object keys in
 * insertion order (callers build objects in Go's struct field order, or sorted for Go maps).
 * `undefined` members are left out, like Go's `omitempty` on a zero value.
 */
export function encodeJson(value: unknown): string {
  if (value === null || value === undefined) {
    return 'null';
  }
  if (typeof value === 'bigint') {
    return value.toString();
  }
  if (value instanceof JsonNumber) {
    return value.source;
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) {
      throw new Error(`cannot encode ${value} as JSON`);
    }
    return JSON.stringify(value);
  }
  if (typeof value === 'string' || typeof value === 'boolean') {
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    return `[${value.map((item) => encodeJson(item)).join(',')}]`;
  }
  if (typeof value === 'object') {
    const members: string[] = [];
    for (const [key, item] of Object.entries(value)) {
      if (item !== undefined) {
        members.push(`${JSON.stringify(key)}:${encodeJson(item)}`);
      }
    }
    return `{${members.join(',')}}`;
  }
  throw new Error(`cannot encode a ${typeof value} as JSON`);
}

/** Returns an object with the keys of a Go map in Go's encoding order (sorted). */
export function sortedMap<T>(entries: Iterable<[string, T]>): Record<string, T> {
  return Object.fromEntries(
    [...entries].sort(([left], [right]) => (left < right ? -1 : left > right ? 1 : 0)),
  );
}

/** Error raised when a JSON value does not fit the Go field it is decoded into. */
export class GoDecodeError extends Error {
  override name = 'GoDecodeError';
}

type GoIntKind = 'int' | 'int64' | 'uint64' | 'uint16';

const INT_LIMITS: Record<GoIntKind, { min: bigint; max: bigint }> = {
  int: { min: -(2n ** 63n), max: 2n ** 63n - 1n },
  int64: { min: -(2n ** 63n), max: 2n ** 63n - 1n },
  uint64: { min: 0n, max: 2n ** 64n - 1n },
  uint16: { min: 0n, max: 2n ** 16n - 1n },
};

/**
 * Reads the members of one JSON object into typed values with the error texts of Go's
 * `encoding/json` (`json: cannot unmarshal string into Go struct field T.f of type int64`).
 * A missing member or `null` gives the Go zero value.
 */
export class GoStructReader {
  constructor(
    private readonly structName: string,
    private readonly object: { [key: string]: JsonValue },
  ) {}

  string(field: string): string {
    const value = this.object[field];
    if (value === undefined || value === null) {
      return '';
    }
    if (typeof value !== 'string') {
      throw this.typeError(field, value, 'string');
    }
    return value;
  }

  bool(field: string): boolean {
    const value = this.object[field];
    if (value === undefined || value === null) {
      return false;
    }
    if (typeof value !== 'boolean') {
      throw this.typeError(field, value, 'bool');
    }
    return value;
  }

  integer(field: string, kind: GoIntKind): bigint {
    const value = this.object[field];
    if (value === undefined || value === null) {
      return 0n;
    }
    if (!(value instanceof JsonNumber)) {
      throw this.typeError(field, value, kind);
    }
    const limits = INT_LIMITS[kind];
    if (!/^-?\d+$/.test(value.source)) {
      throw this.numberError(field, value.source, kind);
    }
    const parsed = BigInt(value.source);
    if (parsed < limits.min || parsed > limits.max) {
      throw this.numberError(field, value.source, kind);
    }
    return parsed;
  }

  stringArray(field: string): string[] {
    const value = this.object[field];
    if (value === undefined || value === null) {
      return [];
    }
    if (!Array.isArray(value)) {
      throw this.typeError(field, value, '[]string');
    }
    return value.map((item) => {
      if (typeof item !== 'string') {
        throw this.typeError(field, item, 'string');
      }
      return item;
    });
  }

  /** Returns a nested object member as its own reader, or undefined when it is missing or null. */
  struct(field: string, structName: string): GoStructReader | undefined {
    const value = this.object[field];
    if (value === undefined || value === null) {
      return undefined;
    }
    if (!isJsonObject(value)) {
      throw this.typeError(field, value, structName);
    }
    return new GoStructReader(structName, value);
  }

  private typeError(field: string, value: JsonValue, goType: string): GoDecodeError {
    return new GoDecodeError(
      `json: cannot unmarshal ${jsonTypeName(value)} into Go struct field ${this.structName}.${field} of type ${goType}`,
    );
  }

  private numberError(field: string, source: string, goType: string): GoDecodeError {
    return new GoDecodeError(
      `json: cannot unmarshal number ${source} into Go struct field ${this.structName}.${field} of type ${goType}`,
    );
  }
}

/** Returns a reader for a JSON object (or null) value, or throws the Go error for another JSON type. */
export function readGoStruct(structName: string, value: JsonValue): GoStructReader {
  if (value === null) {
    // Go leaves the struct at its zero value for a JSON null.
    return new GoStructReader(structName, {});
  }
  if (!isJsonObject(value)) {
    throw new GoDecodeError(
      `json: cannot unmarshal ${jsonTypeName(value)} into Go value of type ${structName}`,
    );
  }
  return new GoStructReader(structName, value);
}

function jsonTypeName(value: JsonValue): string {
  if (value instanceof JsonNumber) {
    return 'number';
  }
  if (Array.isArray(value)) {
    return 'array';
  }
  if (value === null) {
    return 'null';
  }
  return typeof value === 'object' ? 'object' : typeof value;
}
