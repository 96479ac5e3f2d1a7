'use strict';
// shmlease for Node.js: named leases (locks that expire) shared by the
// processes of one host. See index.d.ts for the API.
const { createLocks, createTestClock, unlinkTable, Lease, Locks, KeepAlive, TestClock, version } =
  require('./lib/locks');
const { lock } = require('./lib/lock');
const { toMs } = require('./lib/duration');

module.exports = {
  createLocks, lock, createTestClock, unlinkTable, toMs,
  Lease, Locks, KeepAlive, TestClock, version,
};
