'use strict';
// The locks port in one process: acquire, renew, release, withLease,
// inspection, the test clock, keepalive, waits off the event loop.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { createLocks, createTestClock } = require('..');
const { freshTable, waitFor, rejection } = require('./helpers');

test('acquire gives a lease with a bigint fencing token; a second try is not acquired', async () => {
  const locks = createLocks({ table: freshTable('port') });
  const other = createLocks({ table: locks.table });
  const a = await locks.acquire('schedule:daily-report', { ttlMs: 60000, waitMs: 0 });
  assert.equal(a.acquired, true);
  assert.equal(typeof a.lease.fencingToken, 'bigint');
  assert.equal(a.lease.key, 'schedule:daily-report');
  assert.ok(a.lease.expiresAt > locks.now() && a.lease.expiresAt <= locks.now() + 60000);
  assert.deepEqual(await other.acquire('schedule:daily-report', { ttlMs: 60000 }), { acquired: false });
  assert.equal(await a.lease.release(), true);
  const b = await other.acquire('schedule:daily-report', { ttlMs: 60000 });
  assert.equal(b.acquired, true);
  assert.ok(b.lease.fencingToken > a.lease.fencingToken);
  await locks.close();
  await other.close();
});

test('metadata: an object is stored as JSON, a string and a Buffer as they are', async () => {
  const locks = createLocks({ table: freshTable('meta') });
  await locks.acquire('j', { ttlMs: 60000, metadata: { schedule: 'daily-report' } });
  await locks.acquire('s', { ttlMs: 60000, metadata: 'plain text' });
  await locks.acquire('b', { ttlMs: 60000, metadata: Buffer.from([0, 1, 2, 255]) });
  assert.deepEqual(JSON.parse((await locks.inspect('j')).metadata), { schedule: 'daily-report' });
  assert.equal((await locks.inspect('s')).metadata.toString(), 'plain text');
  assert.deepEqual([...(await locks.inspect('b')).metadata], [0, 1, 2, 255]);
  const info = await locks.inspect('j');
  assert.equal(info.holderPid, process.pid);
  assert.equal(info.holderAlive, true);
  assert.equal(await locks.inspect('free'), null);
  const keys = (await locks.list()).map((i) => i.key).sort();
  assert.deepEqual(keys, ['b', 'j', 's']);
  await locks.close();
});

test('renew moves the deadline; renew resolves false once the lease is broken, for ever', async () => {
  const locks = createLocks({ table: freshTable('renew') });
  const { lease } = await locks.acquire('k', { ttlMs: 5000 });
  assert.equal(await lease.renew({ ttlMs: 60000 }), true);
  assert.ok(lease.expiresAt > locks.now() + 50000);
  assert.equal(await locks.break('k'), true);
  assert.equal(await lease.renew({ ttlMs: 60000 }), false);
  assert.equal(lease.state, 'lost');
  assert.equal(await lease.check(), false);
  // the key taken by another: still lost
  const again = await locks.acquire('k', { ttlMs: 60000 });
  assert.equal(again.acquired, true);
  assert.equal(await lease.renew(), false);
  assert.equal(await lease.release(), false);
  assert.equal(await again.lease.check(), true);
  assert.equal(await locks.break('nobody-holds-this'), false);
  await locks.close();
});

test('a waiting acquire does not block the event loop: a timer releases the key meanwhile', async () => {
  const table = freshTable('wait');
  const holder = createLocks({ table });
  const waiter = createLocks({ table });
  const { lease } = await holder.acquire('busy', { ttlMs: 60000 });
  let released = false;
  // If the wait blocked the loop, this timer could not run before the wait
  // ran out (60 s), and the acquire would not succeed.
  setTimeout(async () => {
    await waitFor(() => holder.inspect('busy').then((i) => i && i.waiters > 0), { what: 'a waiter' });
    released = await lease.release();
  }, 1);
  const r = await waiter.acquire('busy', { ttlMs: 60000, waitMs: 60000 });
  assert.equal(released, true);
  assert.equal(r.acquired, true);
  assert.ok(r.lease.fencingToken > lease.fencingToken);
  await holder.close();
  await waiter.close();
});

test('a wait that runs out is { acquired: false }; an AbortSignal ends a wait', async () => {
  const table = freshTable('abort');
  const holder = createLocks({ table });
  const waiter = createLocks({ table });
  await holder.acquire('held', { ttlMs: 60000 });
  assert.deepEqual(await waiter.acquire('held', { ttlMs: 1000, waitMs: 30 }), { acquired: false });
  const ac = new AbortController();
  const p = waiter.acquire('held', { ttlMs: 1000, waitMs: Infinity, signal: ac.signal });
  await waitFor(() => holder.inspect('held').then((i) => i.waiters > 0), { what: 'a waiter' });
  ac.abort();
  const err = await rejection(p);
  assert.equal(err.name, 'AbortError');
  await waitFor(() => holder.inspect('held').then((i) => i.waiters === 0), { what: 'no waiter' });
  await holder.close();
  await waiter.close();
});

test('more waiting acquires than the library runs at once (256 a process) wait their turn', async () => {
  const table = freshTable('many');
  const holder = createLocks({ table });
  const waiter = createLocks({ table });
  const N = 300;
  const leases = [];
  for (let i = 0; i < N; i++)
    leases.push((await holder.acquire(`k${i}`, { ttlMs: 600000 })).lease);
  const waits = leases.map((_, i) => waiter.acquire(`k${i}`, { ttlMs: 60000, waitMs: 120000 }));
  const ac = new AbortController();
  const aborted = waiter.acquire('k0', { ttlMs: 1000, waitMs: Infinity, signal: ac.signal });
  ac.abort();   // the 301st: queued in the binding (the keys of the first 256 are held)
  assert.equal((await rejection(aborted)).name, 'AbortError');
  for (const l of leases)
    await l.release();
  const got = await Promise.all(waits);
  assert.equal(got.filter((r) => r.acquired).length, N);
  await holder.close();
  await waiter.close();
});

test('closing the table ends its waiting acquires (ECANCELED) and releases its leases', async () => {
  const table = freshTable('close');
  const holder = createLocks({ table });
  const waiter = createLocks({ table });
  await holder.acquire('a', { ttlMs: 60000 });
  const { lease } = await waiter.acquire('b', { ttlMs: 60000 });
  const p = waiter.acquire('a', { ttlMs: 1000, waitMs: Infinity });
  await waitFor(() => holder.inspect('a').then((i) => i.waiters > 0), { what: 'a waiter' });
  await waiter.close();
  const err = await rejection(p);
  assert.equal(err.code, 'ECANCELED');
  assert.equal(await holder.inspect('b'), null);
  assert.equal((await rejection(lease.renew())).code, 'EBADF');
  assert.equal((await rejection(waiter.acquire('c'))).code, 'EBADF');
  await holder.close();
});

test('withLease runs fn with the lease and releases it after', async () => {
  const locks = createLocks({ table: freshTable('with') });
  let token;
  const result = await locks.withLease('outbox:drain', { ttlMs: 30000, waitMs: 5000 }, async ({ lease }) => {
    token = lease.fencingToken;
    assert.equal((await locks.inspect('outbox:drain')).fencingToken, token);
    return 42;
  });
  assert.equal(result, 42);
  assert.equal(typeof token, 'bigint');
  assert.equal(await locks.inspect('outbox:drain'), null);
  await locks.close();
});

test('withLease releases on a thrown error and rethrows it', async () => {
  const locks = createLocks({ table: freshTable('withthrow') });
  const boom = new Error('boom');
  const err = await rejection(locks.withLease('k', { ttlMs: 60000 }, async () => {
    assert.notEqual(await locks.inspect('k'), null);
    throw boom;
  }));
  assert.equal(err, boom);
  assert.equal(await locks.inspect('k'), null);
  const again = await locks.acquire('k', { ttlMs: 60000 });
  assert.equal(again.acquired, true);
  await locks.close();
});

test('withLease: EBUSY when held; ESTALE when the lease was lost before fn ended', async () => {
  const locks = createLocks({ table: freshTable('withlost') });
  const other = createLocks({ table: locks.table });
  const { lease } = await other.acquire('k', { ttlMs: 60000 });
  let ran = false;
  const busy = await rejection(locks.withLease('k', { ttlMs: 1000 }, () => { ran = true; }));
  assert.equal(busy.code, 'EBUSY');
  assert.equal(ran, false);
  await lease.release();
  const lost = await rejection(locks.withLease('k', { ttlMs: 60000 }, async () => {
    await other.break('k');
    return 'done';
  }));
  assert.equal(lost.code, 'ESTALE');
  assert.equal(lost.result, 'done');
  await locks.close();
  await other.close();
});

test('the test clock expires a lease when it passes the deadline', async () => {
  const clock = createTestClock();
  const locks = createLocks({ table: freshTable('clock'), clock });
  const result = await locks.acquire('job:sync', { ttlMs: 1000 });
  assert.equal(result.acquired, true);
  assert.equal(result.lease.expiresAt, clock.now() + 1000);
  clock.advance(999);
  assert.equal(locks.leases.has('job:sync'), true);
  assert.equal(await result.lease.check(), true);
  clock.advance(1);
  assert.equal(await result.lease.renew(), false);
  assert.equal(locks.leases.has('job:sync'), false);
  // the key is free to the next acquirer, with a greater token
  const next = await locks.acquire('job:sync', { ttlMs: 1000 });
  assert.equal(next.acquired, true);
  assert.ok(next.lease.fencingToken > result.lease.fencingToken);
  await locks.close();
});

test('releaseAfter keeps the key held by nobody for the grace period', async () => {
  const clock = createTestClock();
  const locks = createLocks({ table: freshTable('grace'), clock });
  const { lease } = await locks.acquire('daily', { ttlMs: 1000 });
  assert.equal(await lease.releaseAfter(600000), true);
  const info = await locks.inspect('daily');
  assert.equal(info.inGrace, true);
  assert.equal(info.holderPid, 0);
  assert.deepEqual(await locks.acquire('daily', { ttlMs: 1000 }), { acquired: false });
  clock.advance(600000);
  assert.equal((await locks.acquire('daily', { ttlMs: 1000 })).acquired, true);
  await locks.close();
});

test('keepAlive renews in the background past the TTL; onLost tells a break', async () => {
  const locks = createLocks({ table: freshTable('keep') });
  // renewed every second: a deadline 2 s after each renewal leaves room for a loaded machine
  const { lease } = await locks.acquire('long', { ttlMs: 3000 });
  const first = lease.expiresAt;
  let lostErr = null;
  const ka = lease.keepAlive({ onLost: (e) => { lostErr = e; } });
  // past the first deadline, the lease is still ours: renewed meanwhile
  await waitFor(() => locks.now() > first + 300, { what: 'the first deadline to pass' });
  assert.equal(await lease.check(), true);
  assert.ok(ka.renewals >= 2);
  assert.ok(lease.expiresAt > first);
  await locks.break('long');
  await waitFor(() => lostErr, { what: 'onLost' });
  assert.equal(lostErr.code, 'ESTALE');
  assert.equal(lease.state, 'lost');
  assert.equal(ka.stop(), false);
  await locks.close();
});

test('withLease with keepAlive: the lease outlives its TTL while fn runs', async () => {
  const locks = createLocks({ table: freshTable('withkeep') });
  const r = await locks.withLease('k', { ttlMs: 3000, keepAlive: true }, async ({ lease }) => {
    const first = lease.expiresAt;
    await waitFor(() => locks.now() > first + 300, { what: 'the first deadline to pass' });
    return lease.check();
  });
  assert.equal(r, true);
  assert.equal(await locks.inspect('k'), null);
  await locks.close();
});

test('fair waiters are served in arrival order', async () => {
  const table = freshTable('fair');
  const holder = createLocks({ table });
  const first = createLocks({ table });
  const second = createLocks({ table });
  const { lease } = await holder.acquire('q', { ttlMs: 60000, fair: true });
  const got = [];
  const a = first.acquire('q', { ttlMs: 60000, waitMs: 60000, fair: true }).then((r) => { got.push('first'); return r; });
  await waitFor(() => holder.inspect('q').then((i) => i.queued === 1), { what: 'the first in the queue' });
  const b = second.acquire('q', { ttlMs: 60000, waitMs: 60000, fair: true }).then((r) => { got.push('second'); return r; });
  await waitFor(() => holder.inspect('q').then((i) => i.queued === 2), { what: 'the second in the queue' });
  await lease.release();
  const ra = await a;
  assert.deepEqual(got, ['first']);
  await ra.lease.release();
  assert.equal((await b).acquired, true);
  assert.deepEqual(got, ['first', 'second']);
  for (const l of [holder, first, second])
    await l.close();
});

test('shared leases coexist and exclude an exclusive one', async () => {
  const locks = createLocks({ table: freshTable('sharedany') });
  const a = await locks.acquire('cfg', { ttlMs: 60000, shared: true });
  const b = await locks.acquire('cfg', { ttlMs: 60000, shared: true });
  assert.deepEqual([a.acquired, b.acquired], [true, true]);
  assert.equal((await locks.inspect('cfg')).mode, 'shared');
  assert.deepEqual(await locks.acquire('cfg', { ttlMs: 60000 }), { acquired: false });
  await a.lease.release();
  await b.lease.release();
  assert.equal((await locks.acquire('cfg', { ttlMs: 60000 })).acquired, true);
  await locks.close();
});

test('shared leases with a limit: at most N holders', async () => {
  const locks = createLocks({ table: freshTable('shared') });
  const a = await locks.acquire('enc', { ttlMs: 60000, limit: 2 });
  const b = await locks.acquire('enc', { ttlMs: 60000, limit: 2 });
  const c = await locks.acquire('enc', { ttlMs: 60000, limit: 2 });
  assert.deepEqual([a.acquired, b.acquired, c.acquired], [true, true, false]);
  assert.equal((await locks.inspect('enc')).holders, 2);
  assert.deepEqual(await locks.acquire('enc', { ttlMs: 60000 }), { acquired: false });
  await a.lease.release();
  assert.equal((await locks.acquire('enc', { ttlMs: 60000, limit: 2 })).acquired, true);
  await locks.close();
});

test('a table served from the thread pool (as a remote backend is) behaves the same', async () => {
  const table = freshTable('offload');
  const locks = createLocks({ table, _offload: true });
  const plain = createLocks({ table });
  const { lease } = await locks.acquire('k', { ttlMs: 60000, metadata: { a: 1 } });
  assert.equal((await locks.inspect('k')).fencingToken, lease.fencingToken);
  assert.deepEqual(await plain.acquire('k', { ttlMs: 1000 }), { acquired: false });
  assert.equal(await lease.renew({ ttlMs: 120000 }), true);
  assert.ok(lease.expiresAt > locks.now() + 100000);
  assert.equal((await locks.list()).length, 1);
  assert.equal(await plain.break('k'), true);
  assert.equal(await lease.renew(), false);
  const w = await locks.withLease('w', { ttlMs: 1000 }, async ({ lease: l }) => l.fencingToken);
  assert.equal(typeof w, 'bigint');
  assert.equal(await locks.break('w'), false);
  await locks.close();
  await plain.close();
});
