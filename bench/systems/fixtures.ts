/** Wallet files for the baselines, made with the same wallet code and key derivation as the pool. */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { KdfMethod } from '../../common/protocol.js';
import { deriveKey } from '../../common/kdf.js';
import { Wallet } from '../../workers/store/sqlite-wallet.js';

export interface TenantMaterial {
  tenantId: string;
  path: string;
  kdf: KdfMethod;
  salt: Buffer;
  secret: Buffer;
}

export async function createWallets(dir: string, count: number, kdf: KdfMethod, prefix: string): Promise<TenantMaterial[]> {
  const out: TenantMaterial[] = [];
  // A few at a time: Argon2 derivations are memory-bandwidth bound.
  for (let start = 0; start < count; start += 4) {
    const batch = Array.from({ length: Math.min(4, count - start) }, async (_, i) => {
      const tenantId = `${prefix}${start + i}`;
      const material: TenantMaterial = { tenantId, path: join(dir, `${tenantId}.sqlite`), kdf, salt: randomBytes(16), secret: randomBytes(32) };
      const key = await deriveKey(kdf, material.secret, material.salt);
      Wallet.create(material.path, key);
      return material;
    });
    out.push(...(await Promise.all(batch)));
  }
  return out;
}

/** The baselines' tenants: wallet files and the material to open them, by id. */
export class TenantBook {
  readonly #dir: string;
  readonly #tenants = new Map<string, TenantMaterial>();

  constructor(dir: string) {
    this.#dir = dir;
  }

  async create(count: number, kdf: KdfMethod, prefix: string): Promise<string[]> {
    const made = await createWallets(this.#dir, count, kdf, prefix);
    for (const m of made) this.#tenants.set(m.tenantId, m);
    return made.map((m) => m.tenantId);
  }

  get(tenantId: string): TenantMaterial {
    const material = this.#tenants.get(tenantId);
    if (material === undefined) throw new Error(`no tenant ${tenantId}`);
    return material;
  }
}
