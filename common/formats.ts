/**
 * Format versions: every persistent format carries its version, and this release knows the chain
 * of forward migrations from format 1 (release 0.1.0, and every store written before formats
 * carried a version) to its own. Data older than the code is upgraded at open (`upgrade: 'auto'`)
 * or refused with `ERR_UPGRADE_REQUIRED` (`'never'`); data newer than the code is always refused
 * with `ERR_FORMAT_TOO_NEW`, and nothing is changed.
 */
import { poolError, type TenantPoolError } from './errors.js';

/** This release, as format records name it. */
export const RELEASE = '0.3.0';

/** The format of a data folder (its registry). */
export const STORE_FORMAT = 2;
/**
 * The format of a PostgreSQL schema (its registry, wallet and cluster tables). It numbers the same
 * steps as a data folder's up to 2; step 3 is the schema's alone.
 */
export const SCHEMA_FORMAT = 3;
/** The first schema format whose cluster members bind a lease to their membership (renewing it costs one row per instance). */
export const MEMBER_LEASES_FORMAT = 3;
/** The first format whose members read tenants' KDF parameters and the wrapped registry keys. */
export const KDF_PARAMS_FORMAT = 2;
/** The format of a SQLite wallet file (its `user_version`). */
export const WALLET_FILE_FORMAT = 1;
/** The format of an export file (the number on its first line). */
export const EXPORT_FORMAT = 2;

/** What each store format brought, for `tenant-pool info` and the format record. */
export const STORE_FORMATS: Readonly<Record<number, string>> = Object.freeze({
  1: 'release 0.1.0',
  2: 'each tenant records its KDF parameters (algorithm, memory, passes, lanes, version); cluster members record their format',
  3: 'PostgreSQL only: a lease records the life of the member that holds it, and holds while that member is live (renewal writes one row per instance)',
});

/** When data older than this release may be upgraded: at open (`'auto'`), or only by the `upgrade` command (`'never'`). */
export type UpgradeMode = 'auto' | 'never';

/** Data newer than this release: a later release wrote it. */
export function formatTooNew(what: string, found: number, current: number): TenantPoolError<'ERR_FORMAT_TOO_NEW'> {
  return poolError('ERR_FORMAT_TOO_NEW', `${what} is at format ${found}, newer than this release's (tenant-pool ${RELEASE}, format ${current}): a later release wrote it; run that release or a later one. Nothing was changed`, undefined, { found, current });
}

/** Data older than this release, with upgrades off. */
export function upgradeRequired(what: string, found: number, current: number, command: string): TenantPoolError<'ERR_UPGRADE_REQUIRED'> {
  return poolError(
    'ERR_UPGRADE_REQUIRED',
    `${what} is at format ${found} and tenant-pool ${RELEASE} needs format ${current}: back it up, then run \`${command}\` (or open with upgrade: 'auto'). Nothing was changed`,
    undefined,
    { found, current },
  );
}
