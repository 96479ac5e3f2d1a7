'use strict';
// The locks port: createLocks() opens a table and returns acquire, withLease,
// inspection and the operator's break; acquire resolves to a Lease.
const native = require('./native');
const { shmleaseError, invalid } = require('./errors');

const C = native.constants;
const DEFAULT_TTL_MS = 30000;

// The addon's scratch buffer, where lease values cross (see src/addon.cc):
// copied out at once after an acquire, copied in before a call on a lease.
const scratch = new BigUint64Array(native.scratch);

function takeLease() {
  const value = new BigUint64Array(8);
  value.set(scratch);
  return value;
}

// ---------------------------------------------------------------- input

function checkName(value, what) {
  if (typeof value !== 'string' || value.length === 0)
    throw invalid(`${what} must be a non-empty string, not ${JSON.stringify(value)}`);
  if (value.includes('\0'))
    throw invalid(`${what} must not contain a NUL character`);
  return value;
}

// A whole number of ms for the library; Infinity only where allowed.
function msArg(value, what, { dflt, infinite = false } = {}) {
  if (value === undefined)
    return dflt;
  if (typeof value !== 'number' || Number.isNaN(value) || value < 0)
    throw invalid(`${what} must be a number of ms >= 0, not ${JSON.stringify(value)}`);
  if (value === Infinity) {
    if (!infinite)
      throw invalid(`${what} must be finite`);
    return C.WAIT_FOREVER;
  }
  return Math.min(Math.ceil(value), Number.MAX_SAFE_INTEGER);
}

/**
 * Metadata stored with a lease (at most 128 bytes): a Buffer or Uint8Array
 * as is, a string as UTF-8, any other object as its JSON.
 */
function encodeMetadata(m) {
  if (m === undefined || m === null)
    return undefined;
  let buf;
  let as = '';
  if (Buffer.isBuffer(m))
    buf = m;
  else if (m instanceof Uint8Array)
    buf = Buffer.from(m.buffer, m.byteOffset, m.byteLength);
  else if (typeof m === 'string')
    buf = Buffer.from(m, 'utf8');
  else if (typeof m === 'object') {
    buf = Buffer.from(JSON.stringify(m), 'utf8');
    as = ' as JSON';
  } else {
    throw invalid(`metadata must be an object, a string or a Buffer, not ${typeof m}`);
  }
  if (buf.length > C.METADATA_MAX)
    throw invalid(`metadata is ${buf.length} bytes${as}, at most ${C.METADATA_MAX}`);
  return buf;
}

function acquireOptions(opts) {
  if (opts === undefined || opts === null)
    opts = {};
  if (typeof opts !== 'object')
    throw invalid('acquire options must be an object');
  const ttl = msArg(opts.ttlMs, 'ttlMs', { dflt: DEFAULT_TTL_MS });
  const wait = msArg(opts.waitMs, 'waitMs', { dflt: 0, infinite: true });
  const metadata = encodeMetadata(opts.metadata);
  const shared = opts.shared === true || opts.limit !== undefined;
  let limit = 0;
  if (opts.limit !== undefined) {
    if (!Number.isInteger(opts.limit) || opts.limit < 1)
      throw invalid(`limit must be a whole number >= 1, not ${JSON.stringify(opts.limit)}`);
    limit = opts.limit;   // the library refuses one above its maximum
  }
  const flags = opts.fair ? C.FAIR : 0;
  if (opts.signal !== undefined && !(opts.signal instanceof AbortSignal))
    throw invalid('signal must be an AbortSignal');
  return { ttl, wait, metadata, mode: shared ? C.SHARED : 0, limit, flags, signal: opts.signal };
}

// ---------------------------------------------------------------- waits

// The library lets a process have SHMLEASE_ASYNC_MAX waiting acquires at
// once; more wait here, in order, for one of them to end.
let waitingNow = 0;
const overflow = [];

function waitDone() {
  waitingNow--;
  const next = overflow.shift();
  if (next)
    next();
}

function abortError(signal) {
  return signal.reason !== undefined ? signal.reason
    : new DOMException('This operation was aborted', 'AbortError');
}

// Resolves to [rc, leaseValue] without blocking the event loop.
function waitAcquire(table, key, o) {
  const deadline = o.wait === C.WAIT_FOREVER ? Infinity : performance.now() + o.wait;
  return new Promise((resolve, reject) => {
    if (o.signal?.aborted)
      return reject(abortError(o.signal));
    let request = null;
    let settled = false;
    const onAbort = () => {
      if (request) {
        request.cancel();               // the callback below settles
      } else {
        const i = overflow.indexOf(start);
        if (i >= 0)
          overflow.splice(i, 1);        // queued here: nothing started
        finish(C.ECANCELED);
      }
    };
    o.signal?.addEventListener('abort', onAbort, { once: true });
    const finish = (rc, value) => {
      if (settled)
        return;
      settled = true;
      o.signal?.removeEventListener('abort', onAbort);
      if (rc === C.ECANCELED && o.signal?.aborted)
        reject(abortError(o.signal));
      else
        resolve([rc, value]);
    };
    const start = () => {
      if (settled)
        return;
      if (o.signal?.aborted)
        return finish(C.ECANCELED);
      const wait = deadline === Infinity ? C.WAIT_FOREVER
        : Math.max(0, Math.ceil(deadline - performance.now()));
      let r;
      try {
        r = table.acquireAsync(key, o.ttl, wait, o.metadata, o.mode, o.limit, o.flags,
          (rc) => {
            const value = rc === 0 ? takeLease() : undefined;
            request = null;
            waitDone();
            finish(rc, value);
          });
      } catch (e) {
        settled = true;
        return reject(e);
      }
      if (typeof r === 'number') {
        if (r === C.EAGAIN && waitingNow > 0)
          return overflow.push(start);
        return finish(r);
      }
      waitingNow++;
      request = r;
    };
    start();
  });
}

// ---------------------------------------------------------------- calls

// Calls a native method on the thread pool (a remote table): a Promise of
// [rc, extra].
function offloaded(table, method, ...args) {
  return new Promise((resolve) => table[method](...args, (rc, extra) => resolve([rc, extra])));
}

// ---------------------------------------------------------------- lease

class KeepAlive {
  #native;
  #lease;
  #lost = null;

  constructor(nativeKeepAlive, lease) {
    this.#native = nativeKeepAlive;
    this.#lease = lease;
  }

  /** The Error (code ESTALE or EIDRM) once the lease was lost, else null. */
  get lost() { return this.#lost; }

  /** Successful renewals so far (the first, at start, included). */
  get renewals() { return this.#native.renewals(); }

  _lost(rc) {
    this.#lost = shmleaseError(rc, `keepalive of '${this.#lease.key}'`);
    return this.#lost;
  }

  /** Latest deadline set, or undefined once it stopped keeping the lease. */
  _expiresAt() {
    const s = this.#native.status();
    return Array.isArray(s) && s[0] === 0 ? s[1] : undefined;
  }

  /**
   * Stops renewing (the lease stays held until its latest deadline).
   * true: it kept the lease all along; false: the lease was lost.
   */
  stop() {
    const rc = this.#native.stop();
    this.#lease._keepAliveEnded(this);
    if (rc === 0 || rc === C.ECANCELED)
      return this.#lost === null;
    this._lost(rc);
    return false;
  }
}

class Lease {
  #locks;
  #value;
  #ttlMs;
  #key;
  #token;
  #state = 'held';
  #keepAlive = null;

  constructor(locks, key, value, ttlMs) {
    this.#locks = locks;
    this.#value = value;
    this.#ttlMs = ttlMs;
    this.#key = key;
    this.#token = value[0];
  }

  /** The key this lease holds. */
  get key() { return this.#key; }

  /** Greater than every earlier holder's token of this key (a bigint). */
  get fencingToken() { return this.#token; }

  /** The deadline, in ms on the table's clock (see locks.now()). */
  get expiresAt() {
    const k = this.#keepAlive && this.#keepAlive._expiresAt();
    return k !== undefined && k !== null ? k : Number(this.#value[1]);
  }

  /** 'held', 'released' or 'lost', as far as this process has seen. */
  get state() { return this.#state; }

  #table() { return this.#locks._table(); }

  // A call on this lease's value: rc, or a Promise of rc on a remote table.
  #op(method, ...args) {
    const table = this.#table();
    scratch.set(this.#value);
    if (!this.#locks._offloaded) {
      const rc = table[method](...args);
      this.#value.set(scratch);
      return rc;
    }
    return new Promise((resolve) => table[method](...args, (rc) => {
      this.#value.set(scratch);
      resolve(rc);
    }));
  }

  // 0 -> true; ESTALE -> false (lost); anything else throws.
  #answer(rc, what, after) {
    if (rc === 0) {
      if (after)
        this.#state = after;
      return true;
    }
    if (rc === C.ESTALE) {
      this.#state = 'lost';
      return false;
    }
    throw shmleaseError(rc, `${what} '${this.key}'`);
  }

  /**
   * Moves the deadline to now + ttlMs (default: the TTL it was acquired
   * with). Resolves to false once the lease is lost (expired, broken, taken),
   * for ever.
   */
  async renew({ ttlMs } = {}) {
    const ttl = msArg(ttlMs, 'ttlMs', { dflt: this.#ttlMs });
    if (ttl === 0)
      throw invalid('ttlMs must be > 0');
    const ok = this.#answer(await this.#op('renew', ttl), 'renew');
    if (ok)
      this.#ttlMs = ttl;
    return ok;
  }

  /** Frees the key and wakes a waiter. false: it was lost (or released) before. */
  async release() {
    this.#stopKeepAlive();
    return this.#answer(await this.#op('release'), 'release', 'released');
  }

  /**
   * Releases, but keeps the key held by nobody for graceMs more: nobody
   * acquires it before then. false: it was lost before.
   */
  async releaseAfter(graceMs) {
    const grace = msArg(graceMs, 'graceMs', {});
    if (grace === undefined)
      throw invalid('releaseAfter needs graceMs');
    this.#stopKeepAlive();
    return this.#answer(await this.#op('releaseAfter', grace), 'releaseAfter', 'released');
  }

  /** true while this lease is still the current, unexpired claim of its key. */
  async check() {
    return this.#answer(await this.#op('check'), 'check');
  }

  /**
   * Has the library renew the lease in the background (every intervalMs,
   * default a third of ttlMs) to now + ttlMs (default: the lease's TTL),
   * until release, releaseAfter or stop(). onLost(err) is called once if
   * the lease is lost anyway (err.code ESTALE: broken or expired while the
   * process was stopped; EIDRM: the table was removed).
   */
  keepAlive({ ttlMs, intervalMs, onLost } = {}) {
    const ttl = msArg(ttlMs, 'ttlMs', { dflt: this.#ttlMs });
    const interval = msArg(intervalMs, 'intervalMs', { dflt: 0 });
    if (onLost !== undefined && typeof onLost !== 'function')
      throw invalid('onLost must be a function');
    if (this.#keepAlive)
      throw shmleaseError(C.EEXIST, `keepAlive '${this.key}'`);
    let ka = null;
    const table = this.#table();
    scratch.set(this.#value);
    const k = table.keepAlive(ttl, interval, (rc) => {
      this.#state = 'lost';
      const err = ka._lost(rc);
      if (onLost)
        onLost(err);
    });
    if (typeof k === 'number') {
      if (k === C.ESTALE)
        this.#state = 'lost';
      throw shmleaseError(k, `keepAlive '${this.key}'`);
    }
    ka = new KeepAlive(k, this);
    this.#keepAlive = ka;
    return ka;
  }

  _keepAliveEnded(ka) {
    if (this.#keepAlive === ka)
      this.#keepAlive = null;
  }

  #stopKeepAlive() {
    if (this.#keepAlive)
      this.#keepAlive.stop();
  }
}

// ---------------------------------------------------------------- port

class Locks {
  #table;
  #name;

  constructor(table, name) {
    this.#table = table;
    this.#name = name;
    this._offloaded = table.offloaded();
    this.leases = new LeaseView(this);
  }

  /** The table's name. */
  get table() { return this.#name; }

  _table() {
    if (!this.#table)
      throw shmleaseError(C.EBADF, `table '${this.#name}' is closed`);
    return this.#table;
  }

  /**
   * Acquires key: { acquired: true, lease } or { acquired: false } (held by
   * another and waitMs ran out; waitMs 0, the default, tries once). Other
   * failures reject with an Error whose code is the errno name.
   */
  async acquire(key, opts) {
    const [rc, lease] = this._tryNow(key, opts) ?? await this._acquire(key, opts);
    if (rc === 0)
      return { acquired: true, lease };
    if (rc === C.EBUSY || rc === C.ETIMEDOUT)
      return { acquired: false };
    throw shmleaseError(rc, `acquire '${key}'`);
  }

  // The common case, a try on a local table, without a promise of its own:
  // [rc, lease], or undefined for the other cases.
  _tryNow(key, opts) {
    if (this._offloaded || (opts && opts.waitMs !== undefined && opts.waitMs !== 0))
      return undefined;
    checkName(key, 'key');
    const o = acquireOptions(opts);
    const rc = this._table().tryAcquire(key, o.ttl, 0, o.metadata, o.mode, o.limit, o.flags);
    return [rc, rc === 0 ? new Lease(this, key, takeLease(), o.ttl) : undefined];
  }

  async _acquire(key, opts) {
    checkName(key, 'key');
    const o = acquireOptions(opts);
    const table = this._table();
    let rc;
    let value;
    if (o.wait !== 0) {
      [rc, value] = await waitAcquire(table, key, o);
    } else if (!this._offloaded) {
      rc = table.tryAcquire(key, o.ttl, 0, o.metadata, o.mode, o.limit, o.flags);
      value = rc === 0 ? takeLease() : undefined;
    } else {
      [rc, value] = await new Promise((resolve) =>
        table.tryAcquire(key, o.ttl, 0, o.metadata, o.mode, o.limit, o.flags,
          (r) => resolve([r, r === 0 ? takeLease() : undefined])));
    }
    return [rc, rc === 0 ? new Lease(this, key, value, o.ttl) : undefined];
  }

  /**
   * Acquires key (rejecting with code EBUSY, or ETIMEDOUT after waitMs, when
   * it cannot), calls fn({ lease }), then releases the lease unless fn did.
   * fn's error is rethrown after the release. Rejects with code ESTALE when
   * the lease was lost before fn ended (fn's result is then err.result).
   * opts.keepAlive: renew in the background while fn runs.
   */
  async withLease(key, opts, fn) {
    if (typeof opts === 'function' && fn === undefined) {
      fn = opts;
      opts = {};
    }
    if (typeof fn !== 'function')
      throw invalid('withLease needs a function');
    const [rc, lease] = await this._acquire(key, opts);
    if (rc !== 0)
      throw shmleaseError(rc, `withLease '${key}'`);
    if (opts && opts.keepAlive)
      lease.keepAlive();
    let result;
    try {
      result = await fn({ lease });
    } catch (e) {
      if (lease.state === 'held')
        await lease.release().catch(() => {});
      throw e;
    }
    if (lease.state === 'held')
      await lease.release();
    if (lease.state === 'lost') {
      const err = shmleaseError(C.ESTALE, `withLease '${key}': the lease was lost before the end`);
      err.result = result;
      throw err;
    }
    return result;
  }

  /** Operator's tool: ends whoever holds key. false when nobody held it. */
  async break(key) {
    checkName(key, 'key');
    const table = this._table();
    const rc = this._offloaded ? (await offloaded(table, 'breakKey', key))[0] : table.breakKey(key);
    if (rc === 0)
      return true;
    if (rc === C.ENOENT)
      return false;
    throw shmleaseError(rc, `break '${key}'`);
  }

  /**
   * Who holds key: { key, fencingToken, holderPid, holderAlive, remainingMs,
   * expiresAt, waiters, inGrace, mode, holders, metadata (a Buffer), ... },
   * or null when it is free.
   */
  async inspect(key) {
    checkName(key, 'key');
    const table = this._table();
    if (!this._offloaded)
      return this._inspectNow(key);
    const [rc, info] = await offloaded(table, 'inspect', key);
    return this.#infoOrNull(rc, info, key);
  }

  _inspectNow(key) {
    checkName(key, 'key');
    const r = this._table().inspect(key);
    return typeof r === 'number' ? this.#infoOrNull(r, null, key) : r;
  }

  #infoOrNull(rc, info, key) {
    if (rc === 0)
      return info;
    if (rc === C.ENOENT)
      return null;
    throw shmleaseError(rc, `inspect '${key}'`);
  }

  /** Every lease held now (and every grace period), as inspect describes them. */
  async list() {
    const table = this._table();
    let rc = 0;
    let all;
    if (this._offloaded) {
      [rc, all] = await offloaded(table, 'list');
    } else {
      all = table.list();
      if (typeof all === 'number')
        rc = all;
    }
    if (rc !== 0)
      throw shmleaseError(rc, 'list');
    return all;
  }

  /** The table's counters (acquisitions, contended, reclaimedDead, ...). */
  stats() {
    const r = this._table().stats();
    if (typeof r === 'number')
      throw shmleaseError(r, 'stats');
    return r;
  }

  /** The table's clock, in ms: what expiresAt is measured on. */
  now() { return this._table().now(); }

  /**
   * Closes the table: its waiting acquires reject with code ECANCELED, its
   * keepalives stop, and the leases still held through it are released.
   */
  async close() {
    if (!this.#table)
      return;
    const t = this.#table;
    this.#table = null;
    t.close();
  }
}

/** A read-only, Map-like view of the table's leases, by key (synchronous). */
class LeaseView {
  #locks;
  constructor(locks) { this.#locks = locks; }
  has(key) { return this.#locks._inspectNow(key) !== null; }
  get(key) { return this.#locks._inspectNow(key) ?? undefined; }
}

// ---------------------------------------------------------------- clock

/**
 * A clock for tests that only moves when told: advance(ms), set(ms), now().
 * Give it to createLocks({ table, clock }) on a table of its own (every user
 * of a table must use the same clock): leases then expire when the clock
 * passes their deadline. Read by the library from any thread without calling
 * into JavaScript.
 */
class TestClock {
  #native;
  constructor(startMs = 1000000) {
    const ms = msArg(startMs, 'startMs', {});
    this.#native = new native.TestClock(ms);
  }
  now() { return this.#native.now(); }
  advance(ms) { return this.#native.advance(msArg(ms, 'ms', {})); }
  set(ms) { this.#native.set(msArg(ms, 'ms', {})); }
  _native() { return this.#native; }
}

function createTestClock(startMs) {
  return new TestClock(startMs);
}

// ---------------------------------------------------------------- open

/**
 * Opens table (created when missing; default 'locks') and returns the locks
 * port. backend: undefined for the host's shared memory, or a server's URL.
 * clock: a createTestClock() clock. capacity and mode (e.g. 0o660) are used
 * when this call creates the table.
 */
function createLocks(options = {}) {
  if (options === null || typeof options !== 'object')
    throw invalid('createLocks options must be an object');
  const { table = 'locks', backend, clock, capacity = 0, mode = 0 } = options;
  checkName(table, 'table');
  if (backend !== undefined && backend !== null)
    checkName(backend, 'backend');
  if (clock !== undefined && !(clock instanceof TestClock))
    throw invalid('clock must come from createTestClock()');
  if (!Number.isInteger(capacity) || capacity < 0 || capacity > 0xffffffff)
    throw invalid(`capacity must be a whole number >= 0, not ${JSON.stringify(capacity)}`);
  if (!Number.isInteger(mode) || mode < 0 || mode > 0xffffffff)
    throw invalid(`mode must be permission bits such as 0o660, not ${JSON.stringify(mode)}`);
  let t;
  try {
    t = new native.Table(table, backend ?? undefined, clock ? clock._native() : undefined,
      capacity, mode, options._offload === true);
  } catch (e) {
    throw typeof e.errno === 'number' ? shmleaseError(e.errno, `open table '${table}'`) : e;
  }
  return new Locks(t, table);
}

/** Removes table (its segment): open handles keep working. false if missing. */
function unlinkTable(name) {
  checkName(name, 'table');
  const rc = native.unlink(name);
  if (rc === 0)
    return true;
  if (rc === C.ENOENT)
    return false;
  throw shmleaseError(rc, `unlink '${name}'`);
}

module.exports = {
  createLocks, createTestClock, unlinkTable, encodeMetadata, Lease, Locks, KeepAlive, TestClock,
  version: native.version(),
};
