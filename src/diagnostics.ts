/**
 * The pool's `node:diagnostics_channel` channels, named `tenant-pool:<area>:<event>`. Messages are
 * built only when someone subscribes, and never carry a secret (passphrase, key or record value).
 */
import { channel } from 'node:diagnostics_channel';

export const channels = {
  /** A session held past `leakWarningMs`: `{ tenantId, heldMs, stack }` (stack of the acquire call). */
  sessionLeak: channel('tenant-pool:session:leak'),
  /** A session ended by the pool: `{ tenantId, reason: 'maxSessionMs' | 'delete' | 'close', heldMs }`. */
  sessionRevoke: channel('tenant-pool:session:revoke'),
} as const;

/** Publishes `build()` on `ch` if anyone listens; the message is never built otherwise. */
export function publish<T>(ch: { hasSubscribers: boolean; publish(message: unknown): void }, build: () => T): void {
  if (ch.hasSubscribers) ch.publish(build());
}
