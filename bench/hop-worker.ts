/**
 * The far end of `hop-bounds.ts`: a thread holding one wallet, answering the warm-ops mix (a
 * records get, a signature) over a MessagePort in batches, or over two shared-memory rings. A
 * piscina task that serves until the pool is destroyed, as the pool's own workers do.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Wallet } from '../workers/store/sqlite-wallet.js';
import { Outbox, unbatch } from '../common/outbox.js';
import { RING_SLOT, RING_SLOTS, ringView, waitAsync, type HopCall, type HopReply, type HopTask } from './hop-bounds.js';

export default async function serve(task: HopTask): Promise<never> {
  const { port } = task;
  const dir = mkdtempSync(join(tmpdir(), 'tp-hop-'));
  const key = randomBytes(32);
  const path = join(dir, 'w.sqlite');
  Wallet.create(path, key);
  const wallet = Wallet.open(path, key);
  wallet.save('warm', 'r', JSON.stringify({ hello: 'world', n: 1 }), {});
  const { kid } = wallet.createKey();
  const outbox = new Outbox<HopReply>(
    (message) => port.postMessage(message),
    () => {},
  );
  port.on('message', (message: HopCall | HopCall[] | 'stop') => {
    if (message !== 'stop') {
      unbatch(message, ({ id, get, data }) => outbox.push({ id, value: get ? wallet.get('warm', 'r') : wallet.sign(kid, data!) }));
      return;
    }
    wallet.close();
    rmSync(dir, { recursive: true, force: true });
    port.close();
  });
  port.postMessage('ready');

  if (task.transport === 'ring') {
    const requests = ringView(task.requests!);
    const replies = ringView(task.replies!);
    const encoder = new TextEncoder();
    let read = 0;
    const answer = (): void => {
      for (;;) {
        const written = Atomics.load(requests.head, 0);
        if (read === written) {
          // Nothing to do: wait without blocking this thread's event loop (a real worker has async work on it).
          Atomics.store(requests.head, 2, 1);
          const wait = waitAsync(requests.head, 0, written);
          if (wait.async) {
            void wait.value.then(() => {
              Atomics.store(requests.head, 2, 0);
              answer();
            });
            return;
          }
          Atomics.store(requests.head, 2, 0);
          continue;
        }
        let out = Atomics.load(replies.head, 0);
        for (; read < written; read++, out++) {
          const at = (read % RING_SLOTS) * RING_SLOT;
          const to = (out % RING_SLOTS) * RING_SLOT;
          replies.view.setUint32(to, requests.view.getUint32(at));
          const isGet = requests.bytes[at + 4] === 0;
          replies.bytes[to + 4] = isGet ? 0 : 1;
          let length: number;
          if (isGet) {
            length = encoder.encodeInto(JSON.stringify(wallet.get('warm', 'r')), replies.bytes.subarray(to + 7, to + RING_SLOT)).written;
          } else {
            const signature = wallet.sign(kid, requests.bytes.slice(at + 7, at + 7 + requests.view.getUint16(at + 5)));
            replies.bytes.set(signature, to + 7);
            length = signature.length;
          }
          replies.view.setUint16(to + 5, length);
        }
        Atomics.store(replies.head, 0, out);
        Atomics.notify(replies.head, 0);
      }
    };
    answer();
  }
  return new Promise<never>(() => {});
}
