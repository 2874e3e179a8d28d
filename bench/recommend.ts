/** `--recommend`: a config for this machine from what the run measured, with the reasoning for each value. */
import type { Limits } from './limits.js';
import type { Figures } from './scenarios.js';

export function recommend(limits: Limits, results: Record<string, { tenantPool: Figures }>, totalMemory: number): string {
  const lines: string[] = [];
  const fig = (scenario: string, key: string): number | undefined => results[scenario]?.tenantPool[key];

  const workers = limits.cores;
  lines.push(`workers ${workers}: one per core; wallet calls are short and synchronous on their worker, so more threads than cores only compete.`);

  // The fewest at once that come within 5% of the best: more at once only holds more 128 MiB buffers.
  const curve = Object.entries(limits.kdfPerSecByConcurrency).map(([k, v]) => [Number(k), v] as const);
  const kdfConcurrency = curve.find(([, rate]) => rate >= 0.95 * limits.kdfBestPerSec)?.[0] ?? limits.kdfBestConcurrency;
  lines.push(
    `kdfConcurrency ${kdfConcurrency}: argon2i-mod derivations/s by how many ran at once: ${curve.map(([k, v]) => `${k}: ${v}`).join(', ')}; ${kdfConcurrency} at once comes within 5% of the best, and each one more holds another 128 MiB while memory bandwidth is already the limit.`,
  );

  const walletBytes = fig('wallet-memory', 'rssBytesPerWallet');
  const sessionBytes = fig('single-tenant-10k', 'bytesPerSession');
  let wallet = 4;
  if (walletBytes !== undefined && sessionBytes !== undefined && sessionBytes > 0) {
    const ratio = Math.round(walletBytes / sessionBytes);
    wallet = Math.min(16, Math.max(2, ratio));
    lines.push(
      `weights.wallet ${wallet}, weights.session 1: an open wallet took ${Math.round(walletBytes / 1024)} KiB of the process, a session ${Math.round(sessionBytes / 1024)} KiB of main-thread heap (${ratio}×)${ratio > 16 ? '; capped at 16, since a first session must wait for that many free units and a queue of cold tenants would then drain slowly' : ''}.`,
    );
  } else {
    lines.push('weights.wallet 4, weights.session 1: the default (run the wallet-memory and single-tenant-10k scenarios to derive them).');
  }

  const unitBytes = walletBytes !== undefined ? walletBytes / wallet : 256 * 1024;
  const budget = 0.25 * totalMemory;
  const capacity = Math.max(100, Math.floor(budget / unitBytes / 100) * 100);
  lines.push(`capacity ${capacity}: a quarter of this machine's ${Math.round(totalMemory / 2 ** 30)} GiB for wallets and sessions, at about ${Math.round(unitBytes / 1024)} KiB per weight unit (about ${Math.floor(capacity / (wallet + 1))} tenants' first sessions at once).`);

  const coldMs = fig('kdf-open', 'argon2i-modMedianMs') ?? limits.kdfArgon2iModMs;
  const walletIdleTtlMs = coldMs >= 100 ? 300_000 : 60_000;
  lines.push(
    `walletIdleTtlMs ${walletIdleTtlMs}: a cold argon2i-mod open costs ${coldMs} ms of a core while an idle wallet costs only memory, which eviction reclaims when a waiter needs it; keep idle wallets ${walletIdleTtlMs / 60_000} min.`,
  );

  const config = { workers, capacity, weights: { wallet, session: 1 }, kdfConcurrency, walletIdleTtlMs };
  return ['', '## recommended config for this machine', ...lines.map((l) => `- ${l}`), '', JSON.stringify(config, null, 2), ''].join('\n');
}
