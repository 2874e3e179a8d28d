/**
 * Which Argon2 parameters a key derived now gets, and which tenants are re-derived at their next
 * open: a passphrase tenant whose recorded parameters are weaker than its level's current ones (or
 * whose level is `raw`, which earlier releases allowed with a passphrase) gets a new key under the
 * current ones, as a password hash is upgraded at login. While a cluster rolls from an older release
 * (an older member is live), keys get the parameters that release derives with, and nothing is
 * re-derived: the older instances must still open every tenant.
 */
import { CURRENT_KDF_PARAMS, isWeaker, KDF_PARAMS_V1, type Argon2Method, type KdfParams } from '../../common/kdf.js';
import type { KdfMethod } from '../../common/protocol.js';
import type { TenantRecord } from '../store/tenant-store.js';

/** The level a passphrase tenant of level `raw` moves to. */
const PASSPHRASE_LEVEL: Argon2Method = 'argon2i-mod';

export class KdfPolicy {
  readonly #current: Readonly<Record<Argon2Method, KdfParams>>;
  readonly #olderMembers: () => readonly string[];
  readonly #rehash: boolean;

  /**
   * @param current Each level's parameters for keys derived now.
   * @param olderMembers Live cluster members of an older release (none without a cluster).
   * @param rehash Whether opens re-derive weaker tenants (a read-only tool, such as `verify`, does not).
   */
  constructor(current: Readonly<Record<Argon2Method, KdfParams>> = CURRENT_KDF_PARAMS, olderMembers: () => readonly string[] = () => [], rehash = true) {
    this.#current = current;
    this.#olderMembers = olderMembers;
    this.#rehash = rehash;
  }

  /** The parameters a key of level `kdf` derived now gets (undefined for `raw`). */
  paramsFor(kdf: KdfMethod): KdfParams | undefined {
    if (kdf === 'raw') return undefined;
    return this.#olderMembers().length > 0 ? KDF_PARAMS_V1[kdf] : this.#current[kdf];
  }

  /** The level and parameters a passphrase tenant is re-derived to at its next open, or undefined when its own will do. */
  rehashTarget(tenant: Pick<TenantRecord, 'kdf' | 'kdfParams' | 'secret'>): { kdf: Argon2Method; params: KdfParams } | undefined {
    if (!this.#rehash || tenant.secret !== null || this.#olderMembers().length > 0) return undefined;
    if (tenant.kdf === 'raw') return { kdf: PASSPHRASE_LEVEL, params: this.#current[PASSPHRASE_LEVEL] };
    const current = this.#current[tenant.kdf];
    return isWeaker(tenant.kdfParams ?? KDF_PARAMS_V1[tenant.kdf], current) ? { kdf: tenant.kdf, params: current } : undefined;
  }
}
