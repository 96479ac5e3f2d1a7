'use strict';
// Shared by the tests: fresh table names (removed at the end), and waiting
// for a condition without fixed sleeps.
const { after } = require('node:test');
const { unlinkTable } = require('..');

let n = 0;
const made = [];

/** A table name of this test process, removed when the file's tests end. */
function freshTable(what) {
  const name = `nodetest-${what}-${process.pid}-${++n}`;
  made.push(name);
  return name;
}

after(() => {
  for (const name of made)
    unlinkTable(name);
});

/** Resolves once cond() is truthy (polled); rejects after timeoutMs. */
async function waitFor(cond, { timeoutMs = 60000, what = 'condition' } = {}) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v)
      return v;
    if (Date.now() > end)
      throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Rejects with the error fn's promise rejected with, or fails. */
async function rejection(promise) {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

module.exports = { freshTable, waitFor, rejection };
