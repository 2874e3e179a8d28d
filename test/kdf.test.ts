import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { deriveKey } from '../common/kdf.js';

test('argon2i-int reproduces Askar’s Argon2 test vector', async () => {
  const key = await deriveKey('argon2i-int', 'my password', Buffer.from('long enough salt'));
  assert.is(key.toString('hex'), '9ef87bcf828c46c0136a0d1d9e391d713f75b327c6dc190455bd36c1bae33259');
});

test('every method gives 32 bytes that depend on secret and salt', async () => {
  for (const method of ['raw', 'argon2id'] as const) {
    const salt = Buffer.alloc(16, 1);
    const a = await deriveKey(method, 'secret', salt);
    assert.is(a.length, 32);
    assert.equal(await deriveKey(method, 'secret', salt), a, `${method} is deterministic`);
    assert.not.equal(await deriveKey(method, 'secret2', salt), a, `${method} depends on the secret`);
    assert.not.equal(await deriveKey(method, 'secret', Buffer.alloc(16, 2)), a, `${method} depends on the salt`);
  }
});

test.run();
