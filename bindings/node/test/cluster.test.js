'use strict';
// Several Node processes (cluster workers) coordinating through one table.
const { test, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const cluster = require('node:cluster');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { createLocks } = require('..');
const { freshTable, waitFor } = require('./helpers');

cluster.setupPrimary({ exec: path.join(__dirname, 'workers', 'worker.js'), silent: false });

const started = [];

// A worker with its messages collected; next(pred) resolves with the first
// message (not yet taken) that matches.
function fork(env) {
  const w = cluster.fork(env);
  const messages = [];
  const waiting = [];
  w.on('message', (m) => {
    if (m.error)
      console.error(`worker ${m.pid}: ${m.error}`);
    messages.push(m);
    for (const x of waiting.splice(0))
      x();
  });
  const exited = new Promise((r) => w.on('exit', (code, signal) => r({ code, signal })));
  const next = async (pred) => {
    for (;;) {
      const i = messages.findIndex((m) => m.error || pred(m));
      if (i >= 0) {
        const m = messages.splice(i, 1)[0];
        if (m.error)
          throw new Error(`worker failed: ${m.error}`);
        return m;
      }
      await new Promise((r) => waiting.push(r));
    }
  };
  const h = { w, messages, next, exited };
  started.push(h);
  return h;
}

afterEach(async () => {
  for (const h of started.splice(0)) {
    if (h.w.isDead())
      continue;
    h.w.process.kill('SIGKILL');
    await h.exited;
  }
});

test('cluster workers: a once-only job runs once, each item once, the migration once per worker, never two at once', async () => {
  const table = freshTable('jobs');
  const markers = fs.mkdtempSync(path.join(os.tmpdir(), 'shmlease-node-'));
  const N = 4;
  const ITEMS = 24;
  const workers = Array.from({ length: N }, () =>
    fork({ ROLE: 'jobs', TABLE: table, MARKERS: markers, ITEMS: String(ITEMS) }));
  await Promise.all(workers.map((h) => h.next((m) => m.ready)));
  for (const h of workers)
    h.w.send({ go: true });
  await Promise.all(workers.map((h) => h.next((m) => m.done)));
  const all = workers.flatMap((h) => h.messages);
  assert.deepEqual(all.filter((m) => m.violation), []);
  const runs = (name) => all.filter((m) => m.ran === name).length;
  assert.equal(runs('daily-report'), 1);
  assert.equal(runs('migration'), N);
  for (let id = 0; id < ITEMS; id++)
    assert.equal(runs(`file:${id}`), 1, `file ${id}`);
  // the grace periods keep the done jobs' keys
  const locks = createLocks({ table });
  const daily = await locks.inspect('daily-report');
  assert.equal(daily.inGrace, true);
  assert.equal((await locks.inspect('file-processing:0')).inGrace, true);
  assert.equal(await locks.inspect('migration'), null);
  await locks.close();
  fs.rmSync(markers, { recursive: true, force: true });
});

test('a worker killed (SIGKILL) while holding: a waiting worker has the key at once, long before the TTL', async () => {
  const table = freshTable('kill');
  const locks = createLocks({ table });
  const holder = fork({ ROLE: 'holder', TABLE: table, KEY: 'search-index' });
  const held = await holder.next((m) => 'held' in m);
  assert.equal(held.held, true);
  const waiter = fork({ ROLE: 'waiter', TABLE: table, KEY: 'search-index' });
  await waiter.next((m) => m.ready);
  waiter.w.send({ go: true });
  await waitFor(() => locks.inspect('search-index').then((i) => i.waiters > 0),
                { what: 'the waiter to be asleep on the key' });
  assert.equal((await locks.inspect('search-index')).holderPid, holder.w.process.pid);
  holder.w.process.kill('SIGKILL');
  // The holder's TTL is 10 minutes and the waiter waits at most 2: it can
  // only have the key because the holder's death freed it.
  const got = await waiter.next((m) => 'acquired' in m);
  assert.equal(got.acquired, true);
  assert.ok(BigInt(got.token) > BigInt(held.token));
  assert.equal((await holder.exited).signal, 'SIGKILL');
  const info = await locks.inspect('search-index');
  assert.equal(info.holderPid, waiter.w.process.pid);
  assert.ok(locks.stats().reclaimedDead >= 1);
  await locks.close();
});

test('renew resolves false after another process breaks the lease; the keepalive says it was lost', async () => {
  const table = freshTable('break');
  const holder = fork({ ROLE: 'renewer', TABLE: table, KEY: 'report' });
  assert.equal((await holder.next((m) => 'held' in m)).held, true);
  const breaker = fork({ ROLE: 'breaker', TABLE: table, KEY: 'report' });
  assert.equal((await breaker.next((m) => 'broken' in m)).broken, true);
  assert.equal((await holder.next((m) => 'lost' in m)).lost, 'ESTALE');
  holder.w.send({ go: true });
  const r = await holder.next((m) => 'renewed' in m);
  assert.deepEqual([r.renewed, r.checked, r.released], [false, false, false]);
  const locks = createLocks({ table });
  assert.equal(await locks.inspect('report'), null);
  await locks.close();
});
