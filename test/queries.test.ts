/**
 * Record queries (Askar's WQL), counting and paging; paging tenants. Random queries are checked
 * against a reference evaluation in plain JavaScript over the same records.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { checkRecordQuery, type TagQuery } from '../common/query.js';
import { matches, type Tags } from './wql-reference.js';
import { rejectsWith, usePool } from './helpers.js';

test('WQL: random queries of $and, $or, $not, $neq, $in, $like, $gt/$gte/$lt/$lte return exactly what a reference evaluation says, in order; count agrees (tag values holding U+0000 too)', async () => {
  let seed = 99;
  const random = (n: number): number => (seed = (seed * 48271) % 2147483647) % n;
  const pick = <T>(items: readonly T[]): T => items[random(items.length)]!;
  const colors = ['red', 'green', 'blue', 'Red'];
  const sizes = ['01', '05', '10', '20', '42'];
  const records: Array<{ id: string; tags: Tags }> = [];
  for (let i = 0; i < 80; i++) {
    const tags: Tags = {};
    if (random(5) > 0) tags['color'] = pick(colors);
    if (random(4) > 0) tags['size'] = pick(sizes);
    // Some values hold U+0000: every query answers the same for them on both stores.
    if (random(3) === 0) tags['name'] = `item-${pick(['alpha', 'beta', 'gamma', 'al\u0000pha', 'gam\u0000ma\u0000'])}-${i}`;
    records.push({ id: `r${String(i).padStart(3, '0')}`, tags });
  }
  const leaf = (): TagQuery => {
    switch (random(8)) {
      case 0:
        return { color: pick(colors) };
      case 1:
        return { color: { $neq: pick(colors) } };
      case 2:
        return { size: { $in: [pick(sizes), pick(sizes)] } };
      case 3:
        return { name: { $like: pick(['item-a%', '%beta%', 'item-_amma%', '%', '%\u0000%', 'item-al%pha%', 'item-al\u0000%', 'item-gam_ma%', '%ma\u0000-%']) } };
      case 4:
        return { size: { [pick(['$gt', '$gte', '$lt', '$lte'])]: pick(sizes) } };
      case 5:
        return { color: pick(colors), size: pick(sizes) };
      case 6:
        return { missing: 'x' };
      default:
        return {};
    }
  };
  const query = (depth: number): TagQuery => {
    if (depth >= 3 || random(3) === 0) return leaf();
    switch (random(3)) {
      case 0:
        return { $and: [query(depth + 1), query(depth + 1)] };
      case 1:
        return { $or: [query(depth + 1), query(depth + 1), query(depth + 1)] };
      default:
        return { $not: query(depth + 1) };
    }
  };
  await using pool = await usePool();
  await pool.tenants.create({ tenantId: 't' });
  await pool.withSession('t', async (s) => {
    for (const r of records) await s.records.save('item', r.id, { id: r.id }, r.tags);
    await s.records.save('other', 'x', 1, { color: 'red' });
    for (let i = 0; i < 300; i++) {
      const q = query(0);
      const expected = records.filter((r) => matches(checkRecordQuery(q), r.tags)).map((r) => r.id);
      const found = (await s.records.find('item', q)).map((r) => r.id);
      assert.equal(found, expected, JSON.stringify(q));
      assert.is(await s.records.count('item', q), expected.length, `count ${JSON.stringify(q)}`);
      if (i % 10 === 0) assert.equal((await s.records.find('item', q, { limit: 3 })).map((r) => r.id), expected.slice(0, 3));
    }
    // A task sees the same language.
    assert.is(await s.records.count('item'), 80);
    assert.is(await s.records.count('other', { color: 'red' }), 1);
  });
});

test('a bad query is ERR_INVALID_ARGUMENT naming the bad part; nesting and size are bounded', async () => {
  await using pool = await usePool();
  await pool.tenants.create({ tenantId: 't' });
  await pool.withSession('t', async (s) => {
    const cases: Array<[unknown, string]> = [
      [{ $or: [{ a: 'x' }, { b: { $gt: 5 } }] }, 'query.$or[1].b.$gt'],
      [{ a: { $regex: 'x' } }, 'query.a.$regex'],
      [{ $xor: [] }, 'query.$xor'],
      [{ a: { $in: [] } }, 'query.a.$in'],
      [{ $and: { a: 'x' } }, 'query.$and'],
      [{ a: 5 }, 'query.a'],
      [{ $not: 'x' }, 'query.$not'],
      [{ a: 'x\uD800' }, 'query.a'],
    ];
    for (const [q, path] of cases) {
      const error = await rejectsWith(s.records.find('c', q as TagQuery), 'ERR_INVALID_ARGUMENT', JSON.stringify(q));
      assert.match(error.message, path);
    }
    let deep: TagQuery = { a: 'x' };
    for (let i = 0; i < 9; i++) deep = { $not: deep };
    assert.match((await rejectsWith(s.records.find('c', deep), 'ERR_INVALID_ARGUMENT')).message, 'nested deeper');
    const wide = { $or: Array.from({ length: 33 }, (_, i) => ({ [`t${i}`]: 'x', [`u${i}`]: 'y' })) };
    assert.match((await rejectsWith(s.records.count('c', wide), 'ERR_INVALID_ARGUMENT')).message, 'more than 64');
  });
});

test('paging sees every record that existed when it began exactly once, under concurrent inserts, updates and deletes', async () => {
  await using pool = await usePool();
  await pool.tenants.create({ tenantId: 't' });
  await pool.withSession('t', async (s) => {
    for (let i = 0; i < 250; i++) await s.records.save('c', `r${i}`, i, { parity: i % 2 === 0 ? 'even' : 'odd' });
    const seen: string[] = [];
    const deleted = new Set<string>();
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: { records: Array<{ id: string }>; cursor: string | null } = await s.records.page('c', { parity: { $in: ['even', 'odd'] } }, { limit: 40, cursor });
      seen.push(...page.records.map((r) => r.id));
      cursor = page.cursor;
      pages++;
      // Meanwhile: new records, records saved again (updated in place), and deletes ahead of and behind the cursor.
      for (let k = 0; k < 5; k++) await s.records.save('c', `new-${pages}-${k}`, k, { parity: 'even' });
      await s.records.save('c', `r${pages * 3}`, 'updated', { parity: 'odd' });
      for (const victim of [`r${pages * 37 + 1}`, `r${pages * 11}`]) if (await s.records.delete('c', victim)) deleted.add(victim);
    } while (cursor !== null);
    assert.is(new Set(seen).size, seen.length, 'no record twice');
    for (let i = 0; i < 250; i++) if (!deleted.has(`r${i}`)) assert.ok(seen.includes(`r${i}`), `r${i} was not skipped`);
    assert.not.ok(seen.some((id) => id.startsWith('new-')), 'records made after paging began are not part of it');
    assert.ok(pages >= 7);
    // A cursor belongs to its category and query; a damaged one is refused.
    const first = await s.records.page('c', undefined, { limit: 10 });
    assert.is(first.records.length, 10);
    await rejectsWith(s.records.page('c', { parity: 'odd' }, { limit: 10, cursor: first.cursor }), 'ERR_INVALID_ARGUMENT', 'another query');
    await rejectsWith(s.records.page('d', undefined, { limit: 10, cursor: first.cursor }), 'ERR_INVALID_ARGUMENT', 'another category');
    await rejectsWith(s.records.page('c', undefined, { limit: 10, cursor: 'garbage' }), 'ERR_INVALID_ARGUMENT', 'a damaged cursor');
    await rejectsWith(s.records.page('c', undefined, { limit: 0 }), 'ERR_INVALID_ARGUMENT', 'limit 0');
    // find() with a cursor gives the rest as an array; without, the array it always gave.
    const rest = await s.records.find('c', undefined, { cursor: first.cursor! });
    assert.equal([...first.records, ...rest].map((r) => r.id), (await s.records.find('c')).map((r) => r.id));
  });
});

test('a paging cursor is bound to its tenant: tenant A\'s cursor on tenant B (same category and query), one edited by hand, or one of another pool is ERR_INVALID_ARGUMENT, and B\'s own paging is whole', async () => {
  await using pool = await usePool();
  await using other = await usePool();
  for (const p of [pool, other]) for (const tenantId of ['a', 'b']) await p.tenants.create({ tenantId });
  for (const tenantId of ['a', 'b']) {
    await pool.withSession(tenantId, async (s) => {
      for (let i = 0; i < 10; i++) await s.records.save('c', `${tenantId}${i}`, i, { k: 'v' });
    });
  }
  await other.withSession('a', async (s) => s.records.save('c', 'x', 1, { k: 'v' }));
  const fromA = await pool.withSession('a', async (s) => s.records.page('c', { k: 'v' }, { limit: 3 }));
  assert.ok(fromA.cursor !== null);
  await pool.withSession('b', async (s) => {
    await rejectsWith(s.records.page('c', { k: 'v' }, { limit: 3, cursor: fromA.cursor }), 'ERR_INVALID_ARGUMENT', 'a cursor of tenant a on tenant b');
    await rejectsWith(s.records.find('c', { k: 'v' }, { cursor: fromA.cursor! }), 'ERR_INVALID_ARGUMENT', 'find with it too');
    // B's own paging sees all ten of its records.
    const ids: string[] = [];
    for (let cursor: string | null = null; ; ) {
      const page: { records: Array<{ id: string }>; cursor: string | null } = await s.records.page('c', { k: 'v' }, { limit: 3, cursor });
      ids.push(...page.records.map((r) => r.id));
      if ((cursor = page.cursor) === null) break;
    }
    assert.equal(ids, Array.from({ length: 10 }, (_, i) => `b${i}`));
  });
  // The position edited by hand (start over from the first record) does not verify.
  const decoded = JSON.parse(Buffer.from(fromA.cursor, 'base64url').toString('utf8')) as { a: number };
  const forged = Buffer.from(JSON.stringify({ ...decoded, a: 0 }), 'utf8').toString('base64url');
  await pool.withSession('a', async (s) => rejectsWith(s.records.page('c', { k: 'v' }, { limit: 3, cursor: forged }), 'ERR_INVALID_ARGUMENT', 'an edited cursor'));
  // Another pool, even for a tenant of the same id, does not take it.
  await other.withSession('a', async (s) => rejectsWith(s.records.page('c', { k: 'v' }, { limit: 3, cursor: fromA.cursor }), 'ERR_INVALID_ARGUMENT', 'another pool'));
  // The cursor still serves its own tenant.
  assert.is((await pool.withSession('a', async (s) => s.records.page('c', { k: 'v' }, { limit: 3, cursor: fromA.cursor }))).records.length, 3);
});

test('tenants.page and tenants.find: by label and metadata, in id order, no repeats or skips while tenants come and go', async () => {
  await using pool = await usePool();
  for (let i = 0; i < 60; i++) {
    await pool.tenants.create({ tenantId: `t${String(i).padStart(2, '0')}`, label: i % 3 === 0 ? 'gold' : 'plain', metadata: { region: i % 2 === 0 ? 'eu' : 'us' } });
  }
  await pool.closeIdleWallets();
  assert.equal((await pool.tenants.find({ label: 'gold', metadata: { region: 'eu' } })).map((t) => t.tenantId), ['t00', 't06', 't12', 't18', 't24', 't30', 't36', 't42', 't48', 't54']);
  assert.is((await pool.tenants.find({ metadata: { region: 'us', missing: 'x' } })).length, 0);
  const seen: string[] = [];
  let cursor: string | null = null;
  let round = 0;
  do {
    const page: { tenants: Array<{ tenantId: string }>; cursor: string | null } = await pool.tenants.page({ limit: 7, cursor, label: 'plain' });
    seen.push(...page.tenants.map((t) => t.tenantId));
    cursor = page.cursor;
    // Meanwhile, one tenant deleted behind the cursor and one created far ahead.
    round++;
    await pool.tenants.delete(`t${String(round * 3 + 1).padStart(2, '0')}`).catch(() => {});
    await pool.tenants.create({ tenantId: `z${round}`, label: 'plain' });
  } while (cursor !== null);
  assert.is(new Set(seen).size, seen.length);
  assert.equal([...seen].sort(), seen, 'in id order');
  const plainLeft = (await pool.tenants.find({ label: 'plain' })).map((t) => t.tenantId);
  for (const id of plainLeft) if (id.startsWith('t')) assert.ok(seen.includes(id), `${id} not skipped`);
  await rejectsWith(pool.tenants.page({ limit: 5, cursor: '!!' }), 'ERR_INVALID_ARGUMENT');
  await rejectsWith(pool.tenants.page({ limit: 5, colour: 'x' } as never), 'ERR_INVALID_ARGUMENT');
});

test.run();
