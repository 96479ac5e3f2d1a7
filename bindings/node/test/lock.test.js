'use strict';
// lock({ name, handler, wait, maxDuration, gracePeriod, locks }).
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { createLocks, createTestClock, lock, toMs } = require('..');
const { freshTable, waitFor, rejection } = require('./helpers');

// A promise and its resolve, to hold a handler inside its critical section.
function gate() {
  let open;
  const p = new Promise((r) => { open = r; });
  return { p, open };
}

test('without wait, a call that finds the lock held returns undefined without running the handler', async () => {
  const locks = createLocks({ table: freshTable('nowait') });
  const g = gate();
  let runs = 0;
  const job = lock({ locks, name: 'daily', handler: async (x) => { runs++; await g.p; return x * 2; } });
  try {
    const first = job(21);
    await waitFor(() => runs === 1, { what: 'the first call to run' });
    assert.equal(await job(1), undefined);
    assert.equal(runs, 1);
    g.open();
    assert.equal(await first, 42);
    assert.equal(await locks.inspect('daily'), null);
    assert.equal(await job(5), 10);           // free again: runs
  } finally {
    g.open();
    await locks.close();
  }
});

test('with wait, a call waits for the holder, then runs', async () => {
  const locks = createLocks({ table: freshTable('wait') });
  const order = [];
  const g = gate();
  const migration = lock({
    locks, name: 'migration', wait: true,
    handler: async (v) => { order.push(`start ${v}`); if (v === 1) await g.p; order.push(`end ${v}`); },
  });
  try {
    const a = migration(1);
    await waitFor(() => order.length === 1, { what: 'the first call to run' });
    const b = migration(2);
    await waitFor(() => locks.inspect('migration').then((i) => i.waiters > 0), { what: 'a waiter' });
    assert.deepEqual(order, ['start 1']);
    g.open();
    await Promise.all([a, b]);
    assert.deepEqual(order, ['start 1', 'end 1', 'start 2', 'end 2']);
  } finally {
    g.open();                 // a failure above leaves no wait behind
    await locks.close();
  }
});

test('a bounded wait that runs out rejects with ETIMEDOUT', async () => {
  const locks = createLocks({ table: freshTable('bounded') });
  const other = createLocks({ table: locks.table });
  await other.acquire('k', { ttlMs: 60000 });
  let ran = false;
  const job = lock({ locks, name: 'k', wait: 20, handler: () => { ran = true; } });
  assert.equal((await rejection(job())).code, 'ETIMEDOUT');
  assert.equal(ran, false);
  await locks.close();
  await other.close();
});

test('a dynamic name: one lock per argument', async () => {
  const locks = createLocks({ table: freshTable('dyn') });
  const g = gate();
  const seen = [];
  const processFile = lock({
    locks, name: (fileId) => `file-processing:${fileId}`,
    handler: async (fileId) => { seen.push(fileId); await g.p; },
  });
  try {
    const a = processFile('a');
    const b = processFile('b');
    await waitFor(() => seen.length === 2, { what: 'both files to start' });
    assert.equal(await processFile('a'), undefined);
    assert.notEqual(await locks.inspect('file-processing:a'), null);
    assert.notEqual(await locks.inspect('file-processing:b'), null);
    g.open();
    await Promise.all([a, b]);
    assert.deepEqual(seen.sort(), ['a', 'b']);
  } finally {
    g.open();
    await locks.close();
  }
});

test('gracePeriod keeps the key that long after the handler: the job does not run again before', async () => {
  const clock = createTestClock();
  const locks = createLocks({ table: freshTable('grace'), clock });
  let runs = 0;
  const job = lock({ locks, name: 'report', gracePeriod: [5, 'minutes'], handler: () => ++runs });
  assert.equal(await job(), 1);
  const info = await locks.inspect('report');
  assert.equal(info.inGrace, true);
  assert.equal(info.expiresAt, clock.now() + 5 * 60000);
  assert.equal(await job(), undefined);
  clock.advance(5 * 60000);
  assert.equal(await job(), 2);
  await locks.close();
});

test('maxDuration is the TTL, renewed while the handler runs', async () => {
  const locks = createLocks({ table: freshTable('maxdur') });
  let first;
  const job = lock({
    locks, name: 'long', maxDuration: 3000,   // renewed every second
    handler: async () => {
      const info = await locks.inspect('long');
      first = info.expiresAt;
      assert.ok(first <= locks.now() + 3000);
      await waitFor(() => locks.now() > first + 300, { what: 'the first deadline to pass' });
      const later = await locks.inspect('long');
      assert.equal(later.fencingToken, info.fencingToken);
      assert.ok(later.expiresAt > first);
      return 'done';
    },
  });
  assert.equal(await job(), 'done');
  assert.equal(await locks.inspect('long'), null);
  await locks.close();
});

test('a handler that throws: the lock is released (grace kept) and the error rethrown', async () => {
  const locks = createLocks({ table: freshTable('throw') });
  const boom = new Error('boom');
  const job = lock({ locks, name: 'k', handler: () => { throw boom; } });
  assert.equal(await rejection(job()), boom);
  assert.equal(await locks.inspect('k'), null);
  await locks.close();
});

test('a lease broken while the handler ran: rejects with ESTALE, with the result', async () => {
  const locks = createLocks({ table: freshTable('lost') });
  const job = lock({
    locks, name: 'k',
    handler: async () => { await locks.break('k'); return 7; },
  });
  const err = await rejection(job());
  assert.equal(err.code, 'ESTALE');
  assert.equal(err.result, 7);
  await locks.close();
});

test('durations: ms numbers and [n, unit] tuples; anything else is EINVAL', () => {
  assert.equal(toMs(1500, 'd'), 1500);
  assert.equal(toMs([10, 'minutes'], 'd'), 600000);
  assert.equal(toMs([5, 'seconds'], 'd'), 5000);
  assert.equal(toMs([1, 'hour'], 'd'), 3600000);
  assert.equal(toMs([2, 'days'], 'd'), 172800000);
  for (const bad of [[1, 'fortnights'], '10m', -1, NaN, [1], { n: 1 }])
    assert.throws(() => toMs(bad, 'd'), { code: 'EINVAL' });
  assert.throws(() => lock({ handler: () => {}, name: 'x', maxDuration: [3, 'weeks'] }), { code: 'EINVAL' });
  assert.throws(() => lock({ handler: () => {}, name: 'x', gracePeriod: 'soon' }), { code: 'EINVAL' });
  assert.throws(() => lock({ name: 'x' }), { code: 'EINVAL' });
  assert.throws(() => lock({ handler: () => {} }), { code: 'EINVAL' });
});

test('without locks, lock() uses the table $SHMLEASE_TABLE', async () => {
  const table = freshTable('default');
  process.env.SHMLEASE_TABLE = table;
  const view = createLocks({ table });
  const job = lock({ name: 'k', handler: () => view.inspect('k') });
  const info = await job();
  assert.equal(info.holderPid, process.pid);
  assert.equal(await view.inspect('k'), null);
  await view.close();
});
