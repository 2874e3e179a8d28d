/**
 * Two instances of a cluster on loopback, and a small forwarding proxy in front of them. Each
 * instance is a process of its own with a pool on the same PostgreSQL schema and an HTTP server;
 * the proxy asks `tenant-pool/router` where a tenant is served and forwards there, and when an
 * instance answers 307 (`ERR_TENANT_ELSEWHERE`: another instance took the tenant meanwhile) it
 * follows the owner it names.
 *
 *   TENANT_POOL_POSTGRES_URL=postgres://... node --import tsx examples/cluster.ts
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { TenantPool, TenantPoolError } from 'tenant-pool';
import { createRouter } from 'tenant-pool/router';

const url = process.env['TENANT_POOL_POSTGRES_URL'];
if (url === undefined) {
  console.error('set TENANT_POOL_POSTGRES_URL to a PostgreSQL server (source .ci/postgres; start_postgres gives one)');
  process.exit(2);
}

/** One instance: `GET /tenants/<id>/visit` counts a visit in the tenant's wallet and says who served it. */
async function instance(schema: string, rootKey: string, port: number, instanceId: string): Promise<void> {
  const address = `http://127.0.0.1:${port}`;
  const pool = await TenantPool.open({ rootKey, workers: 1, postgres: { connectionString: url!, schema }, cluster: { instanceId, address, leaseTtlMs: 3000 } });
  const server = createServer((req, res) => {
    const tenantId = /^\/tenants\/([A-Za-z0-9_-]+)\/visit$/.exec(req.url ?? '')?.[1];
    if (tenantId === undefined) return void res.writeHead(404).end();
    pool
      .withSession(tenantId, async (s) => {
        const visits = (((await s.records.get('c', 'visits'))?.value as number | undefined) ?? 0) + 1;
        await s.records.save('c', 'visits', visits);
        return visits;
      })
      .then(
        (visits) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ tenantId, visits, servedBy: instanceId })),
        (error: unknown) => {
          if (error instanceof TenantPoolError && error.code === 'ERR_TENANT_ELSEWHERE' && error.owner?.address != null) {
            return void res.writeHead(307, { location: `${error.owner.address}${req.url ?? ''}` }).end();
          }
          const status = error instanceof TenantPoolError && error.retryable ? 503 : 500;
          res.writeHead(status).end(JSON.stringify({ error: (error as Error).message }));
        },
      );
  });
  server.listen(port, '127.0.0.1', () => process.send?.('ready'));
  process.on('SIGTERM', () => void pool.close().finally(() => process.exit(0)));
}

/** Forwards one request to `target` (an instance's address); follows one 307 to the owner it names. */
async function forward(target: string, path: string, hops = 0): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${target}${path}`, (res: IncomingMessage) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => {
        const location = res.headers.location;
        if (res.statusCode === 307 && location !== undefined && hops < 2) resolve(forward(new URL(location).origin, path, hops + 1));
        else resolve({ status: res.statusCode ?? 502, body });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

if (process.argv[2] === 'instance') {
  await instance(process.argv[3]!, process.argv[4]!, Number(process.argv[5]), process.argv[6]!);
} else {
  const schema = `cluster_example_${randomBytes(3).toString('hex')}`;
  const rootKey = randomBytes(32).toString('hex');
  // The tenants, made once by any instance (or an admin tool) on the shared schema.
  const admin = await TenantPool.open({ rootKey, workers: 1, postgres: { connectionString: url, schema }, cluster: { instanceId: 'admin' } });
  for (const tenantId of ['acme', 'globex', 'initech', 'umbrella']) await admin.tenants.create({ tenantId });
  await admin.close();

  const children: ChildProcess[] = [];
  for (const [i, port] of [41001, 41002].entries()) {
    const child = spawn(process.execPath, [...process.execArgv, import.meta.filename, 'instance', schema, rootKey, String(port), `instance-${i + 1}`], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.push(child);
    await new Promise((resolve) => child.once('message', resolve));
  }
  const router = await createRouter({ connectionString: url, schema, leaseTtlMs: 3000 });
  const proxy = createServer((req: IncomingMessage, res: ServerResponse) => {
    const tenantId = /^\/tenants\/([A-Za-z0-9_-]+)\//.exec(req.url ?? '')?.[1];
    if (tenantId === undefined) return void res.writeHead(404).end();
    router
      .route(tenantId)
      .then(async (to) => (to?.address == null ? { status: 503, body: '{"error":"no live instance"}' } : forward(to.address, req.url!)))
      .then(
        ({ status, body }) => res.writeHead(status, { 'content-type': 'application/json' }).end(body),
        () => res.writeHead(502).end(),
      );
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  try {
    for (let round = 0; round < 3; round++) {
      for (const tenantId of ['acme', 'globex', 'initech', 'umbrella']) {
        const { status, body } = await forward(proxyUrl, `/tenants/${tenantId}/visit`);
        console.log(status, body);
      }
    }
  } finally {
    proxy.close();
    await router.close();
    for (const child of children) child.kill('SIGTERM');
    await Promise.all(children.map(async (c) => new Promise((resolve) => c.once('exit', resolve))));
    const pg = (await import('pg')).default;
    const client = new pg.Client(url);
    await client.connect();
    await client.query(`DROP SCHEMA ${schema} CASCADE`);
    await client.end();
  }
}
