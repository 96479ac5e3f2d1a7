'use strict';
// A cluster worker of cluster.test.js: what it does is chosen by ROLE; it
// reports to the primary with process.send and takes orders from it.
const fs = require('node:fs');
const path = require('node:path');
const { createLocks, lock } = require('../..');

const locks = createLocks({ table: process.env.TABLE });
const send = (m) => process.send({ pid: process.pid, ...m });
const orders = [];
let wake = null;
process.on('message', (m) => {
  orders.push(m);
  if (wake)
    wake();
});
async function order() {
  while (orders.length === 0)
    await new Promise((r) => { wake = r; });
  return orders.shift();
}

// Inside a handler: the marker file exists only while one handler runs; a
// second handler that finds it has run beside another one.
async function exclusive(marker, work) {
  let fd;
  try {
    fd = fs.openSync(marker, 'wx');
  } catch {
    send({ violation: marker });
    return;
  }
  try {
    await work();
  } finally {
    fs.closeSync(fd);
    fs.unlinkSync(marker);
  }
}

const roles = {
  // The jobs of a server's workers: a once-only job, per-item jobs, a
  // migration every worker runs in turn.
  async jobs() {
    const dir = process.env.MARKERS;
    const dailyReport = lock({
      locks, name: 'daily-report', gracePeriod: [10, 'minutes'],
      handler: () => exclusive(path.join(dir, 'daily'), async () => {
        send({ ran: 'daily-report' });
        await new Promise((r) => setTimeout(r, 20));
      }),
    });
    const processFile = lock({
      locks, name: (id) => `file-processing:${id}`, gracePeriod: [5, 'minutes'],
      handler: (id) => exclusive(path.join(dir, `file-${id}`), async () => {
        send({ ran: `file:${id}` });
        await new Promise((r) => setImmediate(r));
      }),
    });
    const migration = lock({
      locks, name: 'migration', wait: true, maxDuration: [1, 'minutes'],
      handler: () => exclusive(path.join(dir, 'migration'), async () => {
        send({ ran: 'migration' });
        await new Promise((r) => setTimeout(r, 10));
      }),
    });
    send({ ready: true });
    await order();                                   // go: all at once
    const ids = Array.from({ length: Number(process.env.ITEMS) }, (_, i) => i);
    ids.sort(() => Math.random() - 0.5);
    await Promise.all([dailyReport(), migration(), ...ids.map((id) => processFile(id))]);
    send({ done: true });
  },

  // Holds a key with a long TTL until killed.
  async holder() {
    const r = await locks.acquire(process.env.KEY, { ttlMs: 600000, metadata: { role: 'holder' } });
    send({ held: r.acquired, token: String(r.lease.fencingToken) });
    setInterval(() => {}, 1000);
  },

  // Waits for a key when told to.
  async waiter() {
    send({ ready: true });
    await order();
    const r = await locks.acquire(process.env.KEY, { ttlMs: 60000, waitMs: 120000 });
    send({ acquired: r.acquired, token: r.acquired ? String(r.lease.fencingToken) : null });
    await order();
  },

  // Holds a key, kept alive; on order renews, checks and releases it.
  async renewer() {
    const r = await locks.acquire(process.env.KEY, { ttlMs: 60000 });
    r.lease.keepAlive({ intervalMs: 100, onLost: (e) => send({ lost: e.code }) });
    send({ held: r.acquired });
    await order();
    send({
      renewed: await r.lease.renew(),
      checked: await r.lease.check(),
      released: await r.lease.release(),
    });
    await order();
  },

  // The operator: breaks a key.
  async breaker() {
    send({ broken: await locks.break(process.env.KEY) });
  },
};

roles[process.env.ROLE]().catch((e) => {
  send({ error: String(e && e.stack) });
  process.exitCode = 1;
});
