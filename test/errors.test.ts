import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeError, encodeError, poolError, TenantPoolError } from '../common/errors.js';

test('a TenantPoolError crosses the boundary with class, name, code, message and stack', () => {
  const original = poolError('ERR_WALLET_CORRUPT', 'bad file');
  const copy = decodeError(structuredClone(encodeError(original)));
  assert.instance(copy, TenantPoolError);
  assert.is(copy.name, 'TenantPoolError');
  assert.is((copy as TenantPoolError).code, 'ERR_WALLET_CORRUPT');
  assert.is(copy.message, 'bad file');
  assert.is(copy.stack, original.stack);
});

test('any other error keeps its name, code, message and stack', () => {
  class DidError extends Error {
    code = 'E_DID';
    override name = 'DidError';
  }
  const original = new DidError('no such did');
  const copy = decodeError(structuredClone(encodeError(original)));
  assert.not.instance(copy, TenantPoolError);
  assert.is(copy.name, 'DidError');
  assert.is((copy as Error & { code?: string }).code, 'E_DID');
  assert.is(copy.message, 'no such did');
  assert.is(copy.stack, original.stack);
});

test('a thrown non-error becomes an Error with its text', () => {
  const copy = decodeError(structuredClone(encodeError('plain string')));
  assert.is(copy.message, 'plain string');
});

test.run();
