/**
 * Cluster mode: several instances (hosts) on one PostgreSQL schema, each tenant open on exactly one
 * of them at a time. No coordination service but PostgreSQL:
 *
 * - `members`: each live instance, its address and a heartbeat.
 * - `leases`: the tenant's owner, an epoch and an expiry (server time). Taking a lease is one upsert
 *   that succeeds only when the lease is free, expired or already this instance's, and always
 *   draws a new epoch from one sequence (`lease_epochs`): every wallet open gets a fencing token of
 *   its own, higher than any before it, even after a released lease's row was deleted.
 * - Fencing is in the database: every write of a tenant's wallet runs in a transaction that first
 *   reads its lease row `FOR SHARE` with the owner and epoch it opened under
 *   (`workers/store/postgres-wallet.ts`); a stale owner's write finds no row, changes nothing and
 *   fails `ERR_LEASE_LOST`. A takeover waits for such a write to commit or roll back.
 * - Renewal: a lease records the life of the member that took it, and holds while that life is
 *   live (its heartbeat within its TTL): every third of the TTL the instance renews its member row
 *   alone — one row, however many leases it holds — and its leases hold with it (their expiry is
 *   'infinity'). While a member of an older release is live (it takes a lease by its expiry alone),
 *   the instance renews every lease's expiry too, as that release does, in one statement; it goes
 *   back to renewing its member row alone once no such member is live, first setting its leases'
 *   expiry to 'infinity'. An older member never takes a lease whose expiry is 'infinity'.
 * - Self-fencing on the monotonic clock: a lease counts as held until the moment the last renewal
 *   that found the member live was sent, plus the TTL minus a margin (and, for a lease renewed by
 *   its expiry, the same from its own last renewal), which is before the server could let any
 *   other instance take it. Past that, the instance stops serving the tenant (its sessions are
 *   revoked, its wallet closed), whether or not the database can be reached.
 * - A wallet's lease is given up when it closes; the deletes of leases given up together go in one
 *   statement. `close()` deletes its leases and its member row at once: others take its tenants
 *   without waiting for expiry.
 * - Ownership of the schema (the `ownership` row) is 'cluster' while members serve it; a pool
 *   without the cluster option takes it ('single', a new epoch) only when no member is live, and
 *   then deletes every lease. A member is live while its heartbeat is: one whose heartbeat lapsed
 *   (its process paused, the database away past the TTL) cannot come back by renewing. It loses
 *   every lease and joins again; if a single pool owns the schema meanwhile, it stops serving
 *   (`onOwnershipLost`). A lease is taken only by a live member of a schema in 'cluster' mode.
 */
import { randomBytes } from 'node:crypto';
import type { Pool as PgPool } from 'pg';
import type { ResolvedClusterOptions } from '../config/config.js';
import { ms, type EventHub, type LeaseLossReason } from '../observability/diagnostics.js';
import { poolError, type LeaseOwner, type TenantPoolError } from '../../common/errors.js';
import { placeAmong } from '../engine/placement.js';
import { inTransaction, lockOwnershipChange, openPgPool, ownerLockName, pgError } from '../../common/pg.js';
import { MEMBER_LEASES_FORMAT, SCHEMA_FORMAT } from '../../common/formats.js';
import type { WalletProfileRow } from '../../common/protocol.js';
import { olderMembers, olderMembersJson, type OlderMember } from '../store/pg-format.js';
import { leaseHolds, leaseOwner, liveMembers, routeTenant, type ClusterMemberInfo, type ClusterQuery } from './routing.js';

export type { ClusterMemberInfo } from './routing.js';

/** What a wallet open is fenced by: this instance and the epoch its lease got. */
export interface Fence {
  owner: string;
  epoch: number;
}

interface Held {
  epoch: number;
  /**
   * Monotonic time (performance.now()) until which the lease's own expiry keeps it this instance's:
   * Infinity for a lease bound to the membership alone (the member's horizon applies to every lease).
   */
  validUntil: number;
  /** Monotonic time it was taken. */
  takenAt: number;
}

export interface ClusterHooks {
  /** The tenant's lease is no longer this instance's (not renewed in time, or taken): stop serving it. */
  onLost: (tenantId: string, reason: LeaseLossReason) => void;
  /** Tenants held here whose wallet is idle (no session): those may move to another member. */
  idleTenants: () => string[];
  /** Closes the tenant's idle wallet (its lease goes with it), so that its next session opens where its route now points. */
  handOff: (tenantId: string) => void;
  warn: (message: string, code: string) => void;
  /** The pool's events: each lease taken, given up or lost. */
  events: EventHub;
  /** This instance's heartbeat lapsed and a pool without the cluster option owns the schema now: stop serving. */
  onOwnershipLost: (error: TenantPoolError) => void;
}

export class ClusterMember {
  readonly instanceId: string;
  readonly address: string | null;
  readonly leaseTtlMs: number;
  readonly #pool: PgPool;
  readonly #s: string;
  readonly #hooks: ClusterHooks;
  readonly #held = new Map<string, Held>();
  readonly #marginMs: number;
  #renewTimer: NodeJS.Timeout | undefined;
  #rebalanceTimer: NodeJS.Timeout | undefined;
  #fenceTimer: NodeJS.Timeout | undefined;
  #renewing = false;
  #isClosed = false;
  /** The heartbeat lapsed: every lease is lost and the instance must join again before it takes one. */
  #hasLapsed = false;
  #ownershipLost: TenantPoolError | undefined;
  /** This life of the instance id: its member row's token, so a former life (paused, then resumed) neither beats for nor removes it. */
  readonly #life = randomBytes(8).toString('hex');
  /** Live members of an older format (as of the last join or renewal): while there are any, nothing is written they could not read. */
  #olderMembers: OlderMember[] = [];
  /** Leases are bound to the membership (no member older than format 3 is live): a renewal writes the member row alone. */
  #memberLeases = false;
  /** Held leases whose own expiry still binds them (taken or renewed while an older member was live). */
  #expiryBound = 0;
  /** Lease deletes waiting for the next batch, and the batch under way. */
  #releases: Array<{ tenantId: string; epoch: number }> = [];
  /** Deletes that failed (the database away): retried at the next renewal. */
  #releaseLater: Array<{ tenantId: string; epoch: number }> = [];
  /** The batch a lease given up now joins (not started yet), and the last batch of all. */
  #nextBatch: Promise<void> | undefined;
  #lastBatch: Promise<void> = Promise.resolve();
  /** When (monotonic) the heartbeat was last recorded by the server: the join or the last renewal that found it live. */
  #beatAt: number | undefined;

  private constructor(pool: PgPool, schema: string, options: ResolvedClusterOptions, hooks: ClusterHooks) {
    this.#pool = pool;
    this.#s = schema;
    this.instanceId = options.instanceId;
    this.address = options.address;
    this.leaseTtlMs = options.leaseTtlMs;
    this.#hooks = hooks;
    // Renewal every third of the TTL leaves two chances; the margin covers a slow statement and clock rate drift.
    this.#marginMs = Math.max(250, Math.floor(options.leaseTtlMs / 5));
  }

  /**
   * Joins: records this instance as a live member (an instance id still live elsewhere is refused)
   * and starts renewing.
   * @throws ERR_INVALID_CONFIG when another live instance has this instanceId
   */
  static async join(connectionString: string, schema: string, options: ResolvedClusterOptions, hooks: ClusterHooks): Promise<ClusterMember> {
    // A lease statement held up by a lock for a renewal period is given up (and the renewal after
    // tries again): no lease statement, nor the leave at close, waits on a stuck lock for ever.
    const pool = await openPgPool(connectionString, schema, 2, Math.max(100, Math.floor(options.leaseTtlMs / 3)));
    const member = new ClusterMember(pool, schema, options, hooks);
    try {
      await member.#join();
    } catch (error) {
      await pool.end().catch(() => {});
      throw error;
    }
    member.#renewTimer = setInterval(() => void member.#renew(), Math.max(100, Math.floor(options.leaseTtlMs / 3))).unref();
    member.#fenceTimer = setInterval(() => member.#selfFence(), Math.max(50, Math.floor(options.leaseTtlMs / 20))).unref();
    member.#rebalanceTimer = setInterval(() => void member.rebalance(), options.leaseTtlMs).unref();
    return member;
  }

  /**
   * Records this instance as a live member, in one transaction with the ownership row locked: a
   * schema a single pool owns (its lock held) is refused; one it owned and left becomes the
   * cluster's under a new epoch, which fences out any write that pool might still try.
   */
  async #join(): Promise<void> {
    const s = this.#s;
    await inTransaction(this.#pool, 'joining the cluster', async (client) => {
      // Joins wait their turn on the ownership row however long (many instances starting at once):
      // the lock timeout of these connections is for lease statements.
      await client.query('SET LOCAL lock_timeout = 0');
      const [owned] = (await client.query<{ mode: string }>(`SELECT mode FROM ${s}.ownership FOR UPDATE`)).rows;
      if (owned?.mode === 'single') {
        // Checked with the ownership row locked, as such a pool checks for live members with the row
        // locked: of the two starting together, at most one goes on.
        const [free] = (await client.query<{ ok: boolean }>('SELECT pg_try_advisory_xact_lock(hashtext($1)) AS ok', [ownerLockName(s)])).rows;
        if (free?.ok !== true) throw poolError('ERR_DATA_DIR_LOCKED', `the PostgreSQL schema ${s} is owned by a single pool (opened without the cluster option); close it, then start the cluster's instances`);
      }
      if (owned?.mode !== 'cluster') {
        // Waits for the writes under way of the pool that owned it; its later ones find the new epoch.
        await lockOwnershipChange(client, s);
        await client.query(`UPDATE ${s}.ownership SET mode = 'cluster', epoch = nextval('${s}.lease_epochs')`);
      }
      const { rows } = await client.query(
        `INSERT INTO ${s}.members (instance_id, address, heartbeat_at, lease_ttl_ms, life, format) VALUES ($1, $2, now(), $3, $4, $5)
         ON CONFLICT (instance_id) DO UPDATE SET address = EXCLUDED.address, heartbeat_at = now(), started_at = now(), lease_ttl_ms = EXCLUDED.lease_ttl_ms, life = EXCLUDED.life, format = EXCLUDED.format
         WHERE members.heartbeat_at < now() - COALESCE(members.lease_ttl_ms, $3) * interval '1 millisecond' OR members.life = EXCLUDED.life RETURNING instance_id`,
        [this.instanceId, this.address, this.leaseTtlMs, this.#life, SCHEMA_FORMAT],
      );
      if (rows.length === 0) throw poolError('ERR_INVALID_CONFIG', `another live instance of the cluster has the instanceId ${this.instanceId}`);
      // Leases of an earlier life of this instance id (a crash), or of this life before its heartbeat lapsed, are not held now.
      await client.query(`DELETE FROM ${s}.leases WHERE owner = $1`, [this.instanceId]);
      this.#olderMembers = await olderMembers(client, s);
    });
    this.#beatAt = performance.now();
    // It holds nothing yet: no lease to convert.
    this.#memberLeases = !this.#hasOlderThan(MEMBER_LEASES_FORMAT);
  }

  #hasOlderThan(format: number): boolean {
    return this.#olderMembers.some((m) => m.format < format);
  }

  #setHeld(tenantId: string, held: Held): void {
    this.#deleteHeld(tenantId);
    this.#held.set(tenantId, held);
    if (held.validUntil !== Number.POSITIVE_INFINITY) this.#expiryBound++;
  }

  #deleteHeld(tenantId: string): Held | undefined {
    const held = this.#held.get(tenantId);
    if (held === undefined) return undefined;
    this.#held.delete(tenantId);
    if (held.validUntil !== Number.POSITIVE_INFINITY) this.#expiryBound--;
    return held;
  }

  /** Monotonic time until which this instance is surely a live member (so its membership-bound leases hold). */
  #memberHorizon(): number {
    return this.#beatAt === undefined ? Number.NEGATIVE_INFINITY : this.#beatAt + this.leaseTtlMs - this.#marginMs;
  }

  /**
   * One statement; `name` prepares it on each connection (parsed and planned once), for the
   * statements of every open and renewal. Names need be unique per connection only (the member's
   * connections serve its one schema), and stay short: the server cuts a name at 63 bytes.
   */
  async #query<R = Record<string, unknown>>(what: string, sql: string, params: unknown[], name?: string): Promise<R[]> {
    try {
      return (await this.#pool.query(name === undefined ? { text: sql, values: params } : { name, text: sql, values: params })).rows as R[];
    } catch (error) {
      throw pgError(error, what, !sql.trimStart().startsWith('SELECT'));
    }
  }

  /**
   * Takes the tenant's lease for a wallet open: free, expired (or its owner's life gone) or already
   * this instance's.
   * @throws ERR_TENANT_ELSEWHERE naming the owner when another live instance holds it
   */
  async take(tenantId: string): Promise<Fence> {
    return (await this.#take(tenantId, false)).fence!;
  }

  /**
   * Takes the tenant's lease and reads its registry row and its wallet's row in one statement (a
   * cold open's three round trips in one). No lease is taken for a tenant that does not exist: then
   * `row` is undefined. The tenant's row is read FOR SHARE, so it is the newest (a rekey elsewhere
   * that committed after this statement began is seen, one under way waits for it, and then finds
   * the lease taken); the wallet's row is as the statement began, so the worker reads it again if
   * it does not open with the key.
   * @throws ERR_TENANT_ELSEWHERE naming the owner when another live instance holds it
   */
  async takeWithRow(tenantId: string): Promise<{ fence: Fence | undefined; row: Record<string, unknown> | undefined; wallet: WalletProfileRow | undefined }> {
    return this.#take(tenantId, true);
  }

  async #take(tenantId: string, withRow: boolean): Promise<{ fence: Fence | undefined; row: Record<string, unknown> | undefined; wallet: WalletProfileRow | undefined }> {
    if (this.#isClosed) throw poolError('ERR_POOL_CLOSED', 'the pool is closed');
    if (this.#ownershipLost !== undefined) throw poolError('ERR_OWNERSHIP_LOST', this.#ownershipLost.message);
    if (this.#hasLapsed) throw poolError('ERR_LEASE_LOST', `instance ${this.instanceId} is joining the cluster again (its heartbeat lapsed); try again`, undefined, { tenantId });
    const s = this.#s;
    let owner: LeaseOwner | null = null;
    // A lease given up or run out between the upsert and the look at its owner is taken on the next try.
    for (let attempt = 0; attempt < 3; attempt++) {
      const sentAt = performance.now();
      const memberBound = this.#memberLeases;
      // Only a live member takes a lease, and only while the schema is the cluster's: a process that
      // resumes after a pause past its heartbeat takes nothing before it has joined again. The
      // ownership row is read FOR SHARE, so a single pool's takeover (which deletes every lease)
      // waits for this take and then deletes its lease too. Bound to the membership, the lease's
      // expiry is 'infinity': an older release (which goes by expiry alone) never takes it.
      const upsert = `INSERT INTO ${s}.leases (tenant_id, owner, epoch, expires_at, life)
         SELECT $1, $2, nextval('${s}.lease_epochs'), ${memberBound ? `'infinity'::timestamptz` : `now() + $3 * interval '1 millisecond'`}, $4
         WHERE EXISTS (SELECT 1 FROM ${s}.ownership WHERE mode = 'cluster' FOR SHARE)
           AND EXISTS (SELECT 1 FROM ${s}.members WHERE instance_id = $2 AND life = $4 AND heartbeat_at >= now() - COALESCE(lease_ttl_ms, $3) * interval '1 millisecond')
           ${withRow ? 'AND EXISTS (SELECT 1 FROM tenant)' : ''}
         ON CONFLICT (tenant_id) DO UPDATE SET owner = EXCLUDED.owner, epoch = EXCLUDED.epoch, expires_at = EXCLUDED.expires_at, life = EXCLUDED.life
         WHERE leases.owner = EXCLUDED.owner OR NOT ${leaseHolds(s, 'leases', true)} RETURNING epoch`;
      const rows = await this.#query<{ tp_lease_epoch: string | null } & Record<string, unknown>>(
        `taking the lease of tenant ${tenantId}`,
        withRow
          ? `WITH tenant AS (SELECT * FROM ${s}.tenants WHERE tenant_id = $1 FOR SHARE), taken AS (${upsert})
             SELECT (SELECT epoch FROM taken) AS tp_lease_epoch, w.id AS tp_wallet_id, w.profile_key AS tp_profile_key, tenant.*
             FROM tenant LEFT JOIN ${s}.wallets w ON w.name = tenant.wallet_name`
          : `WITH taken AS (${upsert}) SELECT epoch AS tp_lease_epoch FROM taken`,
        [tenantId, this.instanceId, this.leaseTtlMs, this.#life],
        `tp-take-${memberBound ? 'member' : 'expiry'}${withRow ? '-row' : ''}`,
      );
      const [found] = rows;
      if (withRow && found === undefined) return { fence: undefined, row: undefined, wallet: undefined };
      const epochText = found?.tp_lease_epoch ?? null;
      if (epochText !== null) {
        const epoch = Number(epochText);
        const takenAt = performance.now();
        this.#setHeld(tenantId, { epoch, validUntil: memberBound ? Number.POSITIVE_INFINITY : sentAt + this.leaseTtlMs - this.#marginMs, takenAt });
        this.#hooks.events.emit('tenant-pool:lease:take', () => ({ tenantId, epoch, takeMs: ms(takenAt - sentAt) }));
        let row: Record<string, unknown> | undefined;
        let wallet: WalletProfileRow | undefined;
        if (withRow) {
          const { tp_lease_epoch: _, tp_wallet_id: walletId, tp_profile_key: sealed, ...rest } = found!;
          row = rest;
          if (typeof walletId === 'string' && sealed instanceof Uint8Array) wallet = { name: String(rest['wallet_name']), id: walletId, sealedProfileKey: sealed };
        }
        return { fence: { owner: this.instanceId, epoch }, row, wallet };
      }
      await this.#assertMember(tenantId);
      owner = await this.ownerOf(tenantId);
      if (owner !== null) break;
    }
    throw poolError(
      'ERR_TENANT_ELSEWHERE',
      owner === null
        ? `tenant ${tenantId} is held by another instance: try again`
        : `tenant ${tenantId} is open on instance ${owner.instanceId}${owner.address === null ? '' : ` (${owner.address})`}: forward the request there`,
      undefined,
      { tenantId, owner },
    );
  }

  /** After a refused take: whether it was refused because this instance may not take leases now (not a live member, or the schema not the cluster's). */
  async #assertMember(tenantId: string): Promise<void> {
    const [state] = await this.#query<{ mode: string | null; live: boolean }>(
      'reading the membership of this instance',
      `SELECT (SELECT mode FROM ${this.#s}.ownership) AS mode,
              EXISTS (SELECT 1 FROM ${this.#s}.members WHERE instance_id = $1 AND life = $2 AND heartbeat_at >= now() - COALESCE(lease_ttl_ms, $3) * interval '1 millisecond') AS live`,
      [this.instanceId, this.#life, this.leaseTtlMs],
    );
    if (state?.live !== true) {
      this.#lapse();
      void this.#renew();
      throw poolError('ERR_LEASE_LOST', `instance ${this.instanceId} is joining the cluster again (its heartbeat lapsed); try again`, undefined, { tenantId });
    }
    if (state.mode !== 'cluster') throw poolError('ERR_OWNERSHIP_LOST', this.#loseOwnership().message);
  }

  /** Whether the lease is surely still this instance's now (by the monotonic clock). */
  holds(tenantId: string): boolean {
    const held = this.#held.get(tenantId);
    if (held === undefined) return false;
    const now = performance.now();
    return now < held.validUntil && now < this.#memberHorizon();
  }

  /**
   * Gives the lease up (the wallet closed): deleted at once, so another instance may take it
   * without waiting. Leases given up together (in one turn of the event loop, or while the last
   * batch was under way) are deleted in one statement.
   */
  async release(tenantId: string): Promise<void> {
    const held = this.#deleteHeld(tenantId);
    if (held === undefined) return;
    this.#hooks.events.emit('tenant-pool:lease:release', () => ({ tenantId, epoch: held.epoch, heldMs: ms(performance.now() - held.takenAt) }));
    this.#releases.push({ tenantId, epoch: held.epoch });
    const batch = (this.#nextBatch ??= this.#releaseBatch(this.#lastBatch));
    this.#lastBatch = batch;
    await batch;
  }

  /** The next batch of lease deletes: after the one before it, with every lease given up until it starts. */
  async #releaseBatch(previous: Promise<void>): Promise<void> {
    await previous;
    await new Promise<void>((resolve) => setImmediate(resolve));
    const batch = this.#releases;
    this.#releases = [];
    this.#nextBatch = undefined;
    await this.#query(
      `releasing ${batch.length === 1 ? `the lease of tenant ${batch[0]!.tenantId}` : `${batch.length} leases`}`,
      `DELETE FROM ${this.#s}.leases l USING unnest($1::text[], $2::bigint[]) AS r(tenant_id, epoch) WHERE l.tenant_id = r.tenant_id AND l.epoch = r.epoch AND l.owner = $3`,
      [batch.map((r) => r.tenantId), batch.map((r) => r.epoch), this.instanceId],
      'tp-release',
    ).catch(() => {
      // Tried again at the next renewal (a lease bound to the membership does not run out while
      // this member lives; this member may take it again meanwhile, under a new epoch, which the
      // retried delete leaves alone).
      this.#releaseLater.push(...batch);
    });
  }

  /** Forgets a lease this instance lost (it stops serving the tenant); the row is left to its new owner or to expiry. */
  forget(tenantId: string, reason: LeaseLossReason): void {
    const held = this.#deleteHeld(tenantId);
    if (held === undefined) return;
    this.#hooks.events.emit('tenant-pool:lease:lost', () => ({ tenantId, epoch: held.epoch, heldMs: ms(performance.now() - held.takenAt), reason }));
  }

  /**
   * Renews the membership, and with it every lease bound to it: one member row. While a member of
   * an older release is live, every lease's expiry too, in the same statement (a lease missing from
   * the answer is lost). A heartbeat that had lapsed is not renewed: the instance loses every lease
   * and joins again.
   */
  async #renew(): Promise<void> {
    if (this.#renewing || this.#isClosed || this.#ownershipLost !== undefined) return;
    this.#renewing = true;
    const sentAt = performance.now();
    const byExpiry = !this.#memberLeases;
    const asked = byExpiry ? [...this.#held.entries()].map(([tenantId, h]) => ({ tenantId, epoch: h.epoch })) : [];
    try {
      if (this.#hasLapsed) {
        await this.#join();
        this.#hasLapsed = false;
        this.#hooks.warn(`tenant-pool instance ${this.instanceId} joined the cluster again after its heartbeat lapsed; its tenants were given up`, 'TENANT_POOL_CLUSTER_REJOINED');
        return;
      }
      const s = this.#s;
      const beat = `UPDATE ${s}.members SET heartbeat_at = now(), address = $2 WHERE instance_id = $1 AND life = $3 AND heartbeat_at >= now() - COALESCE(lease_ttl_ms, $4) * interval '1 millisecond' RETURNING 1`;
      const older = `${olderMembersJson(s, '$5')} AS older`;
      const [row] = byExpiry
        ? await this.#query<{ live: boolean; renewed: string[]; older: OlderMember[] }>(
            'renewing leases',
            `WITH beat AS (${beat}),
             renewed AS (
               UPDATE ${s}.leases l SET expires_at = now() + $4 * interval '1 millisecond'
               FROM unnest($6::text[], $7::bigint[]) AS h(tenant_id, epoch)
               WHERE l.tenant_id = h.tenant_id AND l.epoch = h.epoch AND l.owner = $1 AND EXISTS (SELECT 1 FROM beat) RETURNING l.tenant_id)
             SELECT EXISTS (SELECT 1 FROM beat) AS live, ARRAY(SELECT tenant_id FROM renewed) AS renewed, ${older}`,
            [this.instanceId, this.address, this.#life, this.leaseTtlMs, SCHEMA_FORMAT, asked.map((a) => a.tenantId), asked.map((a) => a.epoch)],
            'tp-renew-leases',
          )
        : await this.#query<{ live: boolean; renewed: string[]; older: OlderMember[] }>(
            'renewing the membership',
            `WITH beat AS (${beat}) SELECT EXISTS (SELECT 1 FROM beat) AS live, ${older}`,
            [this.instanceId, this.address, this.#life, this.leaseTtlMs, SCHEMA_FORMAT],
            'tp-renew',
          );
      if (row !== undefined) this.#olderMembers = row.older;
      if (row?.live !== true) {
        this.#lapse();
        return;
      }
      this.#beatAt = sentAt;
      if (this.#releaseLater.length > 0) {
        this.#releases.push(...this.#releaseLater.splice(0));
        this.#lastBatch = this.#nextBatch ??= this.#releaseBatch(this.#lastBatch);
      }
      if (byExpiry) {
        const renewed = new Set(row.renewed);
        for (const { tenantId, epoch } of asked) {
          const held = this.#held.get(tenantId);
          if (held === undefined || held.epoch !== epoch) continue;
          if (renewed.has(tenantId)) {
            if (held.validUntil === Number.POSITIVE_INFINITY) this.#expiryBound++;
            held.validUntil = sentAt + this.leaseTtlMs - this.#marginMs;
          } else this.#lose(tenantId, 'taken');
        }
        if (!this.#hasOlderThan(MEMBER_LEASES_FORMAT)) await this.#bindToMembership();
      } else if (this.#hasOlderThan(MEMBER_LEASES_FORMAT)) {
        // An older member is live now: from the next renewal on, every lease's expiry is renewed too.
        // Until then none can be taken by it: their expiry is 'infinity'.
        this.#memberLeases = false;
      } else if (this.#expiryBound > 0) {
        // A take sent while leases were still renewed by their expiry ended after they were bound.
        await this.#bindToMembership();
      }
    } catch (error) {
      if ((error as TenantPoolError).code === 'ERR_DATA_DIR_LOCKED') {
        this.#loseOwnership();
        return;
      }
      // The database is away: the leases run out on the monotonic clock (#selfFence).
      this.#hooks.warn(`tenant-pool could not renew its leases (${(error as Error).message}); tenants are served until their leases would expire`, 'TENANT_POOL_LEASE_RENEWAL_FAILED');
    } finally {
      this.#renewing = false;
    }
  }

  /**
   * No older member is live: the leases this life holds are bound to its membership from now on.
   * Their expiry becomes 'infinity' first (one statement), so that no later renewal need touch them.
   */
  async #bindToMembership(): Promise<void> {
    const bound = await this.#query<{ tenant_id: string; epoch: string }>(
      'binding leases to the membership',
      `UPDATE ${this.#s}.leases SET expires_at = 'infinity' WHERE owner = $1 AND life = $2 AND expires_at <> 'infinity' RETURNING tenant_id, epoch`,
      [this.instanceId, this.#life],
    );
    for (const { tenant_id: tenantId, epoch } of bound) {
      const held = this.#held.get(tenantId);
      if (held === undefined || held.epoch !== Number(epoch) || held.validUntil === Number.POSITIVE_INFINITY) continue;
      held.validUntil = Number.POSITIVE_INFINITY;
      this.#expiryBound--;
    }
    this.#memberLeases = true;
  }

  /** The heartbeat lapsed on the server: every lease is lost now (others may hold them already), and the next renewal joins again. */
  #lapse(): void {
    if (this.#hasLapsed) return;
    this.#hasLapsed = true;
    this.#hooks.warn(`tenant-pool instance ${this.instanceId} was not heard from within its lease TTL (paused, or cut off from the database): it gave up its tenants and joins the cluster again`, 'TENANT_POOL_CLUSTER_LAPSED');
    for (const tenantId of [...this.#held.keys()]) this.#lose(tenantId, 'expired');
  }

  /** A pool without the cluster option owns the schema now: this instance stops serving for good. */
  #loseOwnership(): TenantPoolError {
    if (this.#ownershipLost === undefined) {
      this.#ownershipLost = poolError('ERR_OWNERSHIP_LOST', `the PostgreSQL schema ${this.#s} was taken by a pool without the cluster option while instance ${this.instanceId} was not heard from; it stopped serving`);
      for (const tenantId of [...this.#held.keys()]) this.#lose(tenantId, 'expired');
      this.#hooks.onOwnershipLost(this.#ownershipLost);
    }
    return this.#ownershipLost;
  }

  #selfFence(): void {
    if (this.#held.size === 0) return;
    const now = performance.now();
    // Past the membership's horizon every lease is lost; before it, only a lease bound by its own expiry can be.
    const all = now >= this.#memberHorizon();
    if (!all && this.#expiryBound === 0) return;
    for (const [tenantId, held] of [...this.#held]) if (all || now >= held.validUntil) this.#lose(tenantId, 'expired');
  }

  #lose(tenantId: string, reason: LeaseLossReason): void {
    this.forget(tenantId, reason);
    this.#hooks.onLost(tenantId, reason);
  }

  /** For `pool.health()`: whether this instance is a live member now, and how old its last recorded heartbeat is. */
  health(): { member: boolean; lastRenewalAgeMs: number | null; leases: number } {
    const member = !this.#isClosed && !this.#hasLapsed && this.#ownershipLost === undefined && this.#beatAt !== undefined && performance.now() - this.#beatAt < this.leaseTtlMs;
    return { member, lastRenewalAgeMs: this.#beatAt === undefined ? null : Math.round(performance.now() - this.#beatAt), leases: this.#held.size };
  }

  /** Live members of an older release's format, as of the last renewal (a rolling upgrade under way). */
  olderMembers(below: number = SCHEMA_FORMAT): readonly string[] {
    return this.#olderMembers.filter((m) => m.format < below).map((m) => m.instanceId);
  }

  /** The instance that holds the tenant's lease now, or null when it is free (or expired). */
  async ownerOf(tenantId: string): Promise<LeaseOwner | null> {
    return leaseOwner(this.#reader, this.#s, tenantId);
  }

  /** The live members (a heartbeat within the lease TTL), with how many leases each holds. */
  async members(): Promise<ClusterMemberInfo[]> {
    return liveMembers(this.#reader, this.#s, this.leaseTtlMs);
  }

  /** The instance that should serve the tenant (see `routeTenant`); this one when no member is live. */
  async route(tenantId: string): Promise<LeaseOwner> {
    return (await routeTenant(this.#reader, this.#s, this.leaseTtlMs, tenantId)) ?? { instanceId: this.instanceId, address: this.address };
  }

  readonly #reader: ClusterQuery = async <R>(what: string, sql: string, params: unknown[]) => this.#query<R>(what, sql, params);

  /**
   * Evens the load out when members come and go, without revoking a session: each idle tenant held
   * here whose route (the bounded-load rendezvous choice over the live members, this one's load
   * counted without it) is another member is handed off, its idle wallet closed and its lease
   * given up, at most a tenth of them (and at least one) per round, every lease TTL. Its next
   * session opens where the route points. Returns how many were handed off.
   */
  async rebalance(): Promise<number> {
    if (this.#isClosed) return 0;
    let members: ClusterMemberInfo[];
    try {
      members = await this.members();
    } catch {
      return 0;
    }
    if (members.length < 2 || !members.some((m) => m.instanceId === this.instanceId)) return 0;
    const idle = this.#hooks.idleTenants().filter((t) => this.#held.has(t));
    const budget = Math.max(1, Math.floor(this.#held.size / 10));
    let moved = 0;
    for (const tenantId of idle) {
      if (moved >= budget) break;
      const loads = members.map((m) => ({ name: m.instanceId, load: m.instanceId === this.instanceId ? m.leases - 1 : m.leases }));
      const chosen = placeAmong(tenantId, loads);
      if (chosen === undefined || chosen === this.instanceId) continue;
      this.#hooks.handOff(tenantId);
      const me = members.find((m) => m.instanceId === this.instanceId)!;
      const to = members.find((m) => m.instanceId === chosen)!;
      me.leases--;
      to.leases++;
      moved++;
    }
    return moved;
  }

  /** Leaves: its leases and member row deleted at once, so others take its tenants without waiting. */
  async close(): Promise<void> {
    if (this.#isClosed) return;
    this.#isClosed = true;
    clearInterval(this.#renewTimer);
    clearInterval(this.#fenceTimer);
    clearInterval(this.#rebalanceTimer);
    const now = performance.now();
    for (const [tenantId, held] of this.#held) this.#hooks.events.emit('tenant-pool:lease:release', () => ({ tenantId, epoch: held.epoch, heldMs: ms(now - held.takenAt) }));
    const epochs = [...this.#held.values()].map((h) => h.epoch);
    this.#held.clear();
    this.#expiryBound = 0;
    await this.#lastBatch;
    // Only what this life holds: a later life of the same id (this one was taken for dead) keeps its leases and its row.
    await this.#query(
      'leaving the cluster',
      `WITH gone AS (DELETE FROM ${this.#s}.leases WHERE owner = $1 AND epoch = ANY($3::bigint[])) DELETE FROM ${this.#s}.members WHERE instance_id = $1 AND life = $2`,
      [this.instanceId, this.#life, epochs],
    ).catch(() => {});
    await this.#query('telling the cluster', `SELECT pg_notify($1, $2)`, [`tenant_pool_${this.#s}`, JSON.stringify({ left: this.instanceId })]).catch(() => {});
    await this.#pool.end().catch(() => {});
  }
}
