/**
 * Logging through a host's logger: any pino-compatible object (`debug`, `info`, `warn`, `error`,
 * each taking a context object first and a message second). The pool logs its events at these
 * levels; with no logger it logs nothing but its warnings, as `process.emitWarning()`.
 *
 * | level | events |
 * |---|---|
 * | debug | session acquire, release and reject (caller errors); wallet open, close and evict; tenant create |
 * | info  | session timeout; revocation on delete or close; worker spawn; pool open and close |
 * | warn  | session leak; revocation at `maxSessionMs`; a wallet lost with its worker; a corrupt wallet; generated root key; files swept at open |
 * | error | worker crash |
 */
import type { EventListener, EventName, PoolEvents } from './diagnostics.js';

/** What the pool needs of a logger: pino's, bunyan's and most others' shape. */
export interface Logger {
  debug(context: object, message?: string): void;
  info(context: object, message?: string): void;
  warn(context: object, message?: string): void;
  error(context: object, message?: string): void;
}

type Level = keyof Logger;

const LEVELS: readonly Level[] = ['debug', 'info', 'warn', 'error'];

/** Whether `value` has the four level methods. */
export function isLogger(value: unknown): value is Logger {
  return typeof value === 'object' && value !== null && LEVELS.every((level) => typeof (value as Record<string, unknown>)[level] === 'function');
}

/** The level and message of each event; the payload is the log line's context. */
const LINES: { [K in EventName]: (p: PoolEvents[K]) => [Level, string] } = {
  'tenant-pool:session:acquire': (p) => ['debug', `session of ${p.tenantId} acquired after ${p.waitMs} ms`],
  'tenant-pool:session:release': (p) => ['debug', `session of ${p.tenantId} released after ${p.holdMs} ms`],
  'tenant-pool:session:timeout': (p) => ['info', `acquire of ${p.tenantId} timed out after ${p.waitMs} ms waiting for ${p.stage === 'admission' ? 'admission' : 'its wallet'} (${p.queued} queued)`],
  'tenant-pool:session:reject': (p) => [p.code === 'ERR_WALLET_CORRUPT' ? 'warn' : 'debug', `acquire of ${p.tenantId ?? '(invalid id)'} failed: ${p.code}`],
  'tenant-pool:session:leak': (p) => ['warn', `session of ${p.tenantId} held for ${p.heldMs} ms without release`],
  'tenant-pool:session:revoke': (p) => [p.reason === 'maxSessionMs' ? 'warn' : 'info', `session of ${p.tenantId} revoked (${p.reason}) after ${p.heldMs} ms`],
  'tenant-pool:wallet:open': (p) => ['debug', `wallet of ${p.tenantId} opened on worker ${p.worker} in ${p.totalMs} ms (${p.kdf})`],
  'tenant-pool:wallet:close': (p) => [p.reason === 'crash' ? 'warn' : 'debug', `wallet of ${p.tenantId} closed (${p.reason})`],
  'tenant-pool:wallet:evict': (p) => ['debug', `idle wallet of ${p.tenantId} evicted for ${p.forTenantId}`],
  'tenant-pool:worker:crash': (p) => ['error', `worker ${p.worker} died: ${p.message}`],
  'tenant-pool:worker:spawn': (p) => ['info', `worker ${p.worker} ${p.isReplacement ? 'replaced' : 'started'} in ${p.startMs} ms`],
  'tenant-pool:tenant:create': (p) => ['debug', `tenant ${p.tenantId} created on worker ${p.worker} in ${p.totalMs} ms (${p.kdf}${p.isKeptOpen ? ', wallet kept open' : ''})`],
  'tenant-pool:lease:take': (p) => ['debug', `lease of ${p.tenantId} taken (epoch ${p.epoch}) in ${p.takeMs} ms`],
  'tenant-pool:lease:release': (p) => ['debug', `lease of ${p.tenantId} given up (epoch ${p.epoch}) after ${p.heldMs} ms`],
  'tenant-pool:lease:lost': (p) => ['warn', `lease of ${p.tenantId} lost (${p.reason}, epoch ${p.epoch}) after ${p.heldMs} ms: its sessions were revoked`],
  'tenant-pool:pool:sweep': (p) => ['warn', `removed ${p.removed.length} wallet file(s) no tenant owns${p.failed.length > 0 ? `; ${p.failed.length} could not be removed` : ''}: ${[...p.removed, ...p.failed].join(', ')}`],
  'tenant-pool:schema:lost': (p) => ['error', `lost the PostgreSQL schema ${p.schema}: ${p.message}`],
};

/** A listener that writes each event to `logger`, its payload as context with an `event` key. */
export function logEvents(logger: Logger): EventListener {
  return (...[name, payload]) => {
    const [level, message] = (LINES[name] as (p: typeof payload) => [Level, string])(payload);
    logger[level]({ event: name, ...payload }, `tenant-pool: ${message}`);
  };
}
