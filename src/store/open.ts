/** Opens the tenants' store the options name: one PostgreSQL schema, or SQLite files in `dataDir` (the default). */
import type { ResolvedOptions } from '../config/config.js';
import { poolError, type TenantPoolError } from '../../common/errors.js';
import { PostgresRegistry } from './postgres-registry.js';
import type { TenantStore, Warn } from './tenant-store.js';
import { SqliteTenantStore } from './sqlite-store.js';

export async function openTenantStore(
  options: ResolvedOptions,
  rootKey: string | undefined,
  postgresUrl: string | undefined,
  warn: Warn,
  onOwnershipLost: (error: TenantPoolError) => void,
  onSwept: (removed: string[], failed: string[]) => void,
): Promise<TenantStore> {
  const pg = options.postgres;
  if (pg === undefined || postgresUrl === undefined) return SqliteTenantStore.open({ dataDir: options.dataDir, rootKey, warn, onSwept, upgrade: options.upgrade });
  const key = rootKey ?? (process.env['TENANT_POOL_ROOT_KEY'] || undefined);
  // No file to generate a key into: the key comes from the host's secret store.
  if (key === undefined) throw poolError('ERR_ROOT_KEY_MISSING', 'the PostgreSQL store needs a root key (rootKey or TENANT_POOL_ROOT_KEY): it seals the tenants\' secrets in the registry');
  return PostgresRegistry.open({
    connectionString: postgresUrl,
    schema: pg.schema,
    rootKey: key,
    cacheSize: pg.registryCacheSize,
    maxConnections: pg.registryConnections,
    connectionsPerWorker: pg.connectionsPerWorker,
    allowExitOnIdle: options.allowExitOnIdle,
    warn,
    onOwnershipLost,
    onSwept: (removed) => onSwept(removed, []),
    exclusive: options.cluster === undefined,
    upgrade: options.upgrade,
  });
}
