// Type declarations of the shmlease package: named leases (locks that
// expire) shared by the processes of one host.

/** An Error of shmlease: code is the errno name ('EBUSY', 'EINVAL', 'ESTALE', ...). */
export interface ShmleaseError extends Error {
  code: string;
  /** The negative errno. */
  errno: number;
  /** withLease and lock: the function's result when the lease was lost (code ESTALE). */
  result?: unknown;
}

/** Metadata stored with a lease, at most 128 bytes: an object is stored as its JSON. */
export type Metadata = Buffer | Uint8Array | string | Record<string, unknown> | unknown[];

export interface AcquireOptions {
  /** Time to live, ms (default 30000). */
  ttlMs?: number;
  /** 0 (default): try once; > 0: wait up to that; Infinity: wait until acquired. */
  waitMs?: number;
  metadata?: Metadata;
  /** Shared lease: any number of shared holders at once, no exclusive one. */
  shared?: boolean;
  /** Shared lease with at most this many holders at once. */
  limit?: number;
  /** Waiters served in arrival order. */
  fair?: boolean;
  /** Ends the wait: the acquire rejects with the signal's reason. */
  signal?: AbortSignal;
}

export type AcquireResult = { acquired: true; lease: Lease } | { acquired: false };

export interface KeepAliveOptions {
  /** Each renewal sets the deadline to now + ttlMs (default: the lease's TTL). */
  ttlMs?: number;
  /** Time between renewals (default: a third of ttlMs). */
  intervalMs?: number;
  /** Called once if the lease is lost anyway (code ESTALE or EIDRM). */
  onLost?: (err: ShmleaseError) => void;
}

export declare class KeepAlive {
  private constructor();
  /** The loss, once the lease was lost; else null. */
  readonly lost: ShmleaseError | null;
  /** Successful renewals, the one at start included. */
  readonly renewals: number;
  /** Stops renewing; true if the lease was kept all along. */
  stop(): boolean;
}

export declare class Lease {
  private constructor();
  readonly key: string;
  /** Greater than every earlier holder's token of the key. */
  readonly fencingToken: bigint;
  /** The deadline, in ms on the table's clock (Locks.now()). */
  readonly expiresAt: number;
  /** As far as this process has seen. */
  readonly state: 'held' | 'released' | 'lost';
  /** New deadline now + ttlMs (default: the last TTL); false once lost, for ever. */
  renew(options?: { ttlMs?: number }): Promise<boolean>;
  /** Frees the key; false if it was lost (or released) before. */
  release(): Promise<boolean>;
  /** Releases, keeping the key held by nobody for graceMs. */
  releaseAfter(graceMs: number): Promise<boolean>;
  /** true while still the current, unexpired claim of the key. */
  check(): Promise<boolean>;
  /** Renews in the background until release or stop. */
  keepAlive(options?: KeepAliveOptions): KeepAlive;
}

export interface LeaseInfo {
  key: string;
  fencingToken: bigint;
  /** 0 in a grace period. */
  holderPid: number;
  /** null: cannot tell. */
  holderAlive: boolean | null;
  remainingMs: number;
  expiresAt: number;
  waiters: number;
  inGrace: boolean;
  mode: 'exclusive' | 'shared';
  limit: number;
  holders: number;
  queued: number;
  metadata: Buffer;
}

export interface TableStats {
  acquisitions: number;
  contended: number;
  waits: number;
  timeouts: number;
  busy: number;
  expirations: number;
  reclaimedDead: number;
  renewals: number;
  lost: number;
  broken: number;
  capacity: number;
  liveKeys: number;
  held: number;
  attached: number;
  fencingCounter: bigint;
}

export interface WithLeaseOptions extends AcquireOptions {
  /** Renew in the background while fn runs. */
  keepAlive?: boolean;
}

export declare class Locks {
  private constructor();
  /** The table's name. */
  readonly table: string;
  /** A synchronous, read-only view of the leases by key. */
  readonly leases: { has(key: string): boolean; get(key: string): LeaseInfo | undefined };
  acquire(key: string, options?: AcquireOptions): Promise<AcquireResult>;
  /**
   * Acquires (rejecting with code EBUSY or ETIMEDOUT when it cannot), runs
   * fn, releases; fn's error is rethrown after the release.
   */
  withLease<T>(key: string, options: WithLeaseOptions, fn: (ctx: { lease: Lease }) => T | Promise<T>): Promise<T>;
  withLease<T>(key: string, fn: (ctx: { lease: Lease }) => T | Promise<T>): Promise<T>;
  /** Ends whoever holds key; false when nobody did. */
  break(key: string): Promise<boolean>;
  inspect(key: string): Promise<LeaseInfo | null>;
  list(): Promise<LeaseInfo[]>;
  stats(): TableStats;
  /** The table's clock, ms. */
  now(): number;
  /** Waiting acquires reject (ECANCELED); leases held through it are released. */
  close(): Promise<void>;
}

export declare class TestClock {
  private constructor();
  now(): number;
  /** Moves the clock forward; returns the new time. */
  advance(ms: number): number;
  set(ms: number): void;
}

export interface CreateLocksOptions {
  /** The table's name (default 'locks'): [A-Za-z0-9._-]{1,200}. */
  table?: string;
  /** undefined: this host's shared memory; else a server's URL. */
  backend?: string | null;
  /** A test clock; the table must be used with this clock only. */
  clock?: TestClock;
  /** Keys the table holds, when this call creates it (default 4096). */
  capacity?: number;
  /** Permission bits when this call creates it (default 0o600). */
  mode?: number;
}

export declare function createLocks(options?: CreateLocksOptions): Locks;
export declare function createTestClock(startMs?: number): TestClock;
/** Removes a table; false if there was none. */
export declare function unlinkTable(name: string): boolean;

/** ms, or a tuple such as [10, "minutes"]. */
export type Duration =
  | number
  | [number, 'ms' | 'millisecond' | 'milliseconds' | 's' | 'second' | 'seconds' | 'm' | 'minute' |
     'minutes' | 'h' | 'hour' | 'hours' | 'd' | 'day' | 'days'];

export declare function toMs(value: Duration, what?: string): number;

export interface LockOptions<A extends unknown[], R> {
  /** The key: a string, or a function of the call's arguments. */
  name: string | ((...args: A) => string);
  handler: (...args: A) => R | Promise<R>;
  /** false (default): skip when held; true: wait; a duration: wait at most that (then ETIMEDOUT). */
  wait?: boolean | Duration;
  /** The lease's TTL (default 5 minutes), renewed while the handler runs. */
  maxDuration?: Duration;
  /** After the handler, nobody takes the key for that long. */
  gracePeriod?: Duration;
  /** false: do not renew while the handler runs. */
  keepAlive?: boolean;
  metadata?: Metadata;
  /** The table (default: createLocks({ table: process.env.SHMLEASE_TABLE || 'locks' })). */
  locks?: Locks;
}

/** A function that runs handler on at most one process at a time; undefined when skipped. */
export declare function lock<A extends unknown[], R>(options: LockOptions<A, R>):
  (...args: A) => Promise<R | undefined>;

/** The version of the libshmlease the addon runs with. */
export declare const version: string;
