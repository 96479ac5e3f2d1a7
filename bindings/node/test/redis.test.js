'use strict';
// The port on a Redis-backed table: a redis-server of the test's own on a
// Unix socket in a temporary directory (skipped when none is installed or
// the library was built without the backend).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const { createLocks } = require('..');
const { freshTable, rejection } = require('./helpers');

const haveServer = spawnSync('sh', ['-c', 'command -v redis-server'], { stdio: 'ignore' }).status === 0;
let dir, server, url;

function ping() {
  return spawnSync('redis-cli', ['-s', path.join(dir, 'r.sock'), 'PING'], { encoding: 'utf8' }).stdout.trim() === 'PONG';
}

before(async () => {
  if (!haveServer)
    return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shmlease-node-redis-'));
  server = spawn('redis-server', ['--port', '0', '--unixsocket', path.join(dir, 'r.sock'),
                                  '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  const end = Date.now() + 20000;
  while (!ping()) {
    if (Date.now() > end)
      throw new Error('redis-server did not answer PING in 20 s');
    await new Promise((r) => setTimeout(r, 20));
  }
  url = `unix://${path.join(dir, 'r.sock')}`;
});

after(() => {
  if (server)
    server.kill('SIGKILL');
  if (dir)
    fs.rmSync(dir, { recursive: true, force: true });
});

function open(table) {
  try {
    return createLocks({ table, backend: url });
  } catch (e) {
    if (e.code === 'EPROTONOSUPPORT')
      return null;                 // a library without the Redis backend
    throw e;
  }
}

test('acquire, busy, wait woken by a release, break, on Redis', { skip: !haveServer && 'redis-server not installed' }, async (t) => {
  const name = freshTable('redis');
  const a = open(name), b = open(name);
  if (!a)
    return t.skip('the library has no Redis backend');
  const r = await a.acquire('job', { ttlMs: 60000, metadata: { by: 'a' } });
  assert.equal(r.acquired, true);
  assert.equal(typeof r.lease.fencingToken, 'bigint');
  assert.deepEqual(await b.acquire('job', { ttlMs: 1000, waitMs: 0 }), { acquired: false });
  setTimeout(() => r.lease.release(), 200);
  const w = await b.acquire('job', { ttlMs: 60000, waitMs: 30000 });
  assert.equal(w.acquired, true);
  assert.ok(w.lease.fencingToken > r.lease.fencingToken);
  assert.equal(await a.break('job'), true);
  assert.equal(await w.lease.renew({ ttlMs: 1000 }), false);
  await a.close();
  await b.close();
});

test('withLease releases on a thrown error; modes Redis lacks say EOPNOTSUPP', { skip: !haveServer && 'redis-server not installed' }, async (t) => {
  const locks = open(freshTable('redis-with'));
  if (!locks)
    return t.skip('the library has no Redis backend');
  const err = await rejection(locks.withLease('k', { ttlMs: 60000 }, () => { throw new Error('boom'); }));
  assert.equal(err.message, 'boom');
  const again = await locks.acquire('k', { ttlMs: 1000 });
  assert.equal(again.acquired, true);
  await again.lease.release();
  const e2 = await rejection(locks.acquire('s', { ttlMs: 1000, shared: true }));
  assert.equal(e2.code, 'EOPNOTSUPP');
  await locks.close();
});
