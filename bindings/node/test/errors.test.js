'use strict';
// Bad input: an Error whose code is the errno name, and nothing changed.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { createLocks, createTestClock } = require('..');
const { freshTable, rejection } = require('./helpers');

test('bad acquire input rejects with EINVAL (ENAMETOOLONG for a long key) and takes nothing', async () => {
  const locks = createLocks({ table: freshTable('bad') });
  const cases = [
    [['', { ttlMs: 1000 }], 'EINVAL'],
    [[42, { ttlMs: 1000 }], 'EINVAL'],
    [['k\0x', { ttlMs: 1000 }], 'EINVAL'],
    [['k', { ttlMs: 0 }], 'EINVAL'],
    [['k', { ttlMs: -5 }], 'EINVAL'],
    [['k', { ttlMs: '1000' }], 'EINVAL'],
    [['k', { ttlMs: 1000, waitMs: -1 }], 'EINVAL'],
    [['k', { ttlMs: 1000, metadata: { text: 'x'.repeat(200) } }], 'EINVAL'],
    [['k', { ttlMs: 1000, metadata: Buffer.alloc(129) }], 'EINVAL'],
    [['k', { ttlMs: 1000, metadata: 12 }], 'EINVAL'],
    [['k', { ttlMs: 1000, limit: 0 }], 'EINVAL'],
    [['k', { ttlMs: 1000, limit: 5000 }], 'EINVAL'],
    [['k', { ttlMs: 1000, signal: 'no' }], 'EINVAL'],
    [['k', 'options'], 'EINVAL'],
    [['k'.repeat(128), { ttlMs: 1000 }], 'ENAMETOOLONG'],
  ];
  for (const [args, code] of cases) {
    const err = await rejection(locks.acquire(...args));
    assert.ok(err instanceof Error);
    assert.equal(err.code, code, `${JSON.stringify(args).slice(0, 80)}: ${err.message}`);
    assert.equal(typeof err.errno, 'number');
  }
  const meta = await rejection(locks.acquire('k', { metadata: { text: 'x'.repeat(200) } }));
  assert.match(meta.message, /metadata is \d+ bytes as JSON, at most 128/);
  assert.deepEqual(await locks.list(), []);
  assert.equal(locks.stats().acquisitions, 0);
  // 128 bytes exactly is fine
  assert.equal((await locks.acquire('k', { metadata: Buffer.alloc(128, 1) })).acquired, true);
  await locks.close();
});

test('bad lease calls and port calls are EINVAL and change nothing', async () => {
  const locks = createLocks({ table: freshTable('badlease') });
  const { lease } = await locks.acquire('k', { ttlMs: 60000 });
  const before = lease.expiresAt;
  assert.equal((await rejection(lease.renew({ ttlMs: 0 }))).code, 'EINVAL');
  assert.equal((await rejection(lease.renew({ ttlMs: -1 }))).code, 'EINVAL');
  assert.equal((await rejection(lease.releaseAfter())).code, 'EINVAL');
  assert.equal((await rejection(lease.releaseAfter('soon'))).code, 'EINVAL');
  assert.throws(() => lease.keepAlive({ intervalMs: 60000 }), { code: 'EINVAL' });
  assert.equal(lease.expiresAt, before);
  assert.equal(await lease.check(), true);
  assert.equal((await rejection(locks.withLease('k2', { ttlMs: 1000 }))).code, 'EINVAL');
  assert.equal((await rejection(locks.break(''))).code, 'EINVAL');
  assert.equal((await rejection(locks.inspect(''))).code, 'EINVAL');
  assert.equal((await locks.list()).length, 1);
  await locks.close();
});

test('bad createLocks input is EINVAL and creates no table', () => {
  for (const opts of [
    { table: '' }, { table: 'a/b' }, { table: '..' }, { table: 'x'.repeat(201) }, { table: 'ok\0x' },
    { table: 7 }, { table: 'ok', capacity: -1 }, { table: 'ok', capacity: 1 << 25 },
    { table: 'ok', mode: 0o1777 }, { table: 'ok', clock: { now: () => 0 } }, { table: 'ok', backend: 5 },
  ]) {
    assert.throws(() => createLocks(opts), (e) => e instanceof Error && e.code === 'EINVAL',
                  JSON.stringify(opts));
  }
  assert.equal(fs.existsSync('/dev/shm/shmlease.ok'), false);
  assert.throws(() => createTestClock(-1), { code: 'EINVAL' });
});

test('a backend this library cannot serve is refused with its errno name', () => {
  const table = freshTable('backend');
  let err;
  try {
    createLocks({ table, backend: 'nosuchscheme://x' });
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof Error);
  assert.match(err.code, /^E[A-Z]+$/);
  assert.equal(fs.existsSync(`/dev/shm/shmlease.${table}`), false);
});
