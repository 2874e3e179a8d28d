/**
 * Inbound messages: `pool.dispatch()` finds the tenant that routes the message's recipient key and
 * runs the worker modules' `inbound` handler in a session of that tenant.
 */
import { poolError } from '../common/errors.js';
import type { JsonValue } from '../common/protocol.js';
import { checkName, checkOptionalObject, invalid, toJson } from '../common/validate.js';

/** A message for `pool.dispatch()`: one recipient key, or the keys of an envelope (the first routed here wins). */
export type DispatchMessage = { recipientKey: string; recipientKeys?: undefined; body: JsonValue } | { recipientKeys: string[]; recipientKey?: undefined; body: JsonValue };

/** What dispatch needs of the pool. */
export interface DispatchContext {
  maxValueBytes: number;
  /** The tenant a routing key belongs to. */
  routeOf(recipientKey: string): Promise<string | undefined>;
  /** @throws when the pool is closed or lost its store */
  assertOpen(): void;
  /** Runs the `inbound` handler in a session of the tenant (released whatever happens) and returns its result. */
  inbound(tenantId: string, message: { recipientKey: string; body: JsonValue }): Promise<unknown>;
}

/**
 * Checks the message, finds the tenant of its first recipient key that routes here, and delivers it.
 * @throws ERR_INVALID_ARGUMENT for a bad message, ERR_ROUTE_NOT_FOUND when no key routes here
 */
export async function dispatchMessage(ctx: DispatchContext, message: DispatchMessage): Promise<unknown> {
  const msg = checkOptionalObject(message, 'message');
  for (const key of Object.keys(msg)) if (!['recipientKey', 'recipientKeys', 'body'].includes(key)) invalid(`Unknown message key \`${key}\`; known: recipientKey, recipientKeys, body`);
  const keys = recipientKeysOf(msg);
  toJson(msg['body'], ctx.maxValueBytes);
  for (const recipientKey of keys) {
    const tenantId = await ctx.routeOf(recipientKey);
    ctx.assertOpen();
    if (tenantId !== undefined) return ctx.inbound(tenantId, { recipientKey, body: msg['body'] as JsonValue });
  }
  throw poolError('ERR_ROUTE_NOT_FOUND', `no tenant has a routing key equal to ${keys.length === 1 ? 'this recipientKey' : `any of these ${keys.length} recipient keys`}`);
}

/** The recipient keys of an inbound message: `recipientKeys` (in order), or the one `recipientKey`. */
function recipientKeysOf(msg: Record<string, unknown>): string[] {
  if (msg['recipientKeys'] === undefined) return [checkName(msg['recipientKey'], 'recipientKey')];
  if (msg['recipientKey'] !== undefined) invalid('Expected one of `recipientKey` and `recipientKeys`, got both');
  const keys = msg['recipientKeys'];
  if (!Array.isArray(keys) || keys.length === 0 || keys.length > 64) invalid('Expected `recipientKeys` to be an array of 1 to 64 keys');
  return keys.map((k, i) => checkName(k, `recipientKeys[${i}]`));
}
