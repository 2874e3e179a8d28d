/**
 * An example worker module, as a host application would write one: a per-tenant service from the
 * tenant's DI container, a task, and an inbound handler that files messages and signs a receipt.
 * Every worker thread imports it; `npm start` uses it.
 */
import type { DependencyContainer } from 'tsyringe';
import { defineModule, type TenantContext } from 'tenant-pool/worker';

/** Counts what one tenant received while its wallet was open; disposed when the wallet closes. */
class InboxStats {
  received = 0;
  dispose(): void {
    this.received = 0;
  }
}

const encoder = new TextEncoder();

function stats(ctx: TenantContext): InboxStats {
  return ctx.container.resolve<InboxStats>('InboxStats');
}

export default defineModule({
  register(container: DependencyContainer) {
    container.registerSingleton('InboxStats', InboxStats);
  },
  tasks: {
    /** How many messages the tenant's inbox holds, and how many arrived since its wallet opened. */
    inboxSize: async (ctx) => ({ stored: (await ctx.wallet.records.find('inbox')).length, sinceOpen: stats(ctx).received }),
  },
  async inbound(ctx, message) {
    const body = message.body as { from: string; text: string };
    const routing = (await ctx.wallet.records.get('config', 'routing'))?.value as { kid: string; publicKey: string } | undefined;
    if (routing === undefined || routing.publicKey !== message.recipientKey) throw new Error('no routing key of this tenant matches');
    const id = `${Date.now().toString(36)}-${stats(ctx).received++}`;
    await ctx.wallet.records.save('inbox', id, body, { from: body.from });
    const receipt = await ctx.wallet.keys.sign(routing.kid, encoder.encode(`${message.recipientKey}:${id}`));
    return { id, receipt: Buffer.from(receipt).toString('base64url') };
  },
});
