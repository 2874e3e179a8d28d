import { WorkerSlot } from './src/threads.ts';
const slot = new WorkerSlot({ index: 0, onCrash: (i, e) => console.log('crash', i, e.message) });
let t = performance.now(); await slot.ready(); console.log('ready', performance.now() - t);
console.log(await slot.call('echo', { a: 1 }));
t = performance.now(); for (let i = 0; i < 1000; i++) await slot.call('echo', i); console.log('echo us', (performance.now() - t));
const p = slot.call('openWallet', { tenantId: 'x', path: '/tmp/none', kdf: 'argon2i-mod', salt: new Uint8Array(16), secret: 'pw', verifier: new Uint8Array(32) });
const p2 = slot.call('echo', 5);
console.log(await p2);
setTimeout(() => void slot.thread?.terminate(), 50);
try { await p } catch (e) { console.log('rejected', (e as any).code, (e as Error).message) }
await slot.ready(); console.log('after restart', await slot.call('echo', 'hi'), slot.crashes);
await slot.close();
console.log('closed');
