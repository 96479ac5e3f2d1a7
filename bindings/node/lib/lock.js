'use strict';
// lock({ name, handler, wait, maxDuration, gracePeriod, locks }): a function
// that runs handler on at most one process of the host at a time.
const { createLocks } = require('./locks');
const { toMs } = require('./duration');
const { shmleaseError, invalid } = require('./errors');
const native = require('./native');

const C = native.constants;
const DEFAULT_MAX_DURATION = [5, 'minutes'];

let defaultLocks = null;

/**
 * Returns an async function (...args) that runs handler(...args) while
 * holding the lease of name (a string, or a function of the same args):
 *  - wait false (default): a call that finds the lease held returns
 *    undefined at once, without running handler;
 *  - wait true: waits for the lease, then runs handler; wait a duration:
 *    waits at most that long, then rejects with code ETIMEDOUT;
 *  - maxDuration (default 5 minutes): the lease's TTL; it is renewed in the
 *    background while handler runs (keepAlive: false turns that off), so it
 *    bounds how long a stopped or frozen process keeps the lease;
 *  - gracePeriod: after handler, the key stays held by nobody that long
 *    (a job done less than gracePeriod ago is not run again).
 * Durations: ms, or [n, unit] such as [10, "minutes"].
 * Resolves to handler's result, or undefined when it did not run. If the
 * lease was lost while handler ran (broken), rejects with code ESTALE after
 * handler (its result is err.result).
 */
function lock(options) {
  if (options === null || typeof options !== 'object')
    throw invalid('lock() needs an options object');
  const { handler, name, wait = false, maxDuration = DEFAULT_MAX_DURATION, gracePeriod,
          keepAlive = true, metadata } = options;
  if (typeof handler !== 'function')
    throw invalid('lock() needs a handler function');
  let keyOf;
  if (typeof name === 'function')
    keyOf = name;
  else if (typeof name === 'string' && name.length > 0)
    keyOf = () => name;
  else
    throw invalid('lock() needs a name: a string, or a function of the arguments');
  const ttlMs = toMs(maxDuration, 'maxDuration');
  if (ttlMs === 0)
    throw invalid('maxDuration must be > 0');
  const waitMs = wait === true ? Infinity : wait === false ? 0 : toMs(wait, 'wait');
  const graceMs = gracePeriod === undefined ? 0 : toMs(gracePeriod, 'gracePeriod');
  let locks = options.locks;
  if (locks !== undefined && (locks === null || typeof locks.acquire !== 'function'))
    throw invalid('locks must come from createLocks()');

  return async function locked(...args) {
    if (!locks) {
      defaultLocks ??= createLocks({ table: process.env.SHMLEASE_TABLE || 'locks' });
      locks = defaultLocks;
    }
    const key = keyOf(...args);
    const r = await locks.acquire(key, { ttlMs, waitMs, metadata });
    if (!r.acquired) {
      if (waitMs === 0)
        return undefined;
      throw shmleaseError(C.ETIMEDOUT, `lock '${key}'`);
    }
    const { lease } = r;
    // A keepalive renews every third of the TTL: too short a TTL for that
    // is a lease that simply expires.
    const ka = keepAlive && ttlMs >= 3 ? lease.keepAlive({ ttlMs }) : null;
    let result;
    try {
      result = await handler(...args);
    } catch (e) {
      ka?.stop();
      await end(lease, graceMs).catch(() => {});
      throw e;
    }
    const keptAll = ka ? ka.stop() : true;
    const ended = await end(lease, graceMs);
    if (!keptAll || !ended) {
      const err = shmleaseError(C.ESTALE, `lock '${key}': the lease was lost while the handler ran`);
      err.result = result;
      throw err;
    }
    return result;
  };
}

function end(lease, graceMs) {
  return graceMs > 0 ? lease.releaseAfter(graceMs) : lease.release();
}

module.exports = { lock };
