import assert from 'node:assert/strict';
import { test } from 'node:test';
import { z } from 'zod';
import { errorMessage, PermanentError } from '../src/core/errors.js';

test('zod error becomes one line per issue', () => {
  const schema = z.object({
    blobber_url: z.string({ error: 'the blobber URL is not known yet' }),
    size: z.object({ bytes: z.number().int().min(1) }),
  });
  const result = schema.safeParse({ blobber_url: null, size: { bytes: 0 } });

  assert.equal(result.success, false);
  const message = errorMessage(result.error);
  assert.equal(
    message,
    'blobber_url: the blobber URL is not known yet; size.bytes: Too small: expected number to be >=1',
  );
  assert.doesNotMatch(message, /[{}[\]\n]/, 'no JSON left');
});

test('zod error without a path keeps the message', () => {
  const result = z.string().min(3, 'must have at least 3 characters').safeParse('ab');

  assert.equal(errorMessage(result.error), 'must have at least 3 characters');
});

test('other errors keep their message', () => {
  assert.equal(errorMessage(new PermanentError('blobber rejected the key')), 'blobber rejected the key');
  assert.equal(errorMessage('plain text'), 'plain text');

  const named = Object.assign(new Error('[]'), { name: 'ZodError', issues: [] });
  assert.equal(errorMessage(named), '[]', 'a ZodError without issues keeps its message');
});
