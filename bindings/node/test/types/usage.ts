// Compiled (not run) by types.test.js: the README's uses type-check against
// index.d.ts, and misuses do not.
import { createLocks, createTestClock, lock, AcquireResult, Lease, LeaseInfo } from '../..';

async function main(): Promise<void> {
  const locks = createLocks({ table: 'jobs' });
  const result = await locks.acquire('schedule:daily-report', {
    ttlMs: 60_000, waitMs: 0, metadata: { schedule: 'daily-report' },
  });
  if (!result.acquired) return;
  const lease: Lease = result.lease;
  const token: bigint = lease.fencingToken;
  const renewed: boolean = await lease.renew({ ttlMs: 60_000 });
  await lease.release();
  const n: number = await locks.withLease('outbox:drain', { ttlMs: 30_000, waitMs: 5_000 },
    async ({ lease: l }) => Number(l.fencingToken));
  const info: LeaseInfo | null = await locks.inspect('k');
  const broken: boolean = await locks.break('k');
  const clock = createTestClock();
  clock.advance(1_000);
  const test = createLocks({ table: 't', clock });
  const has: boolean = test.leases.has('job:sync');

  const processFile = lock({
    locks, name: (fileId: string) => `file-processing:${fileId}`, gracePeriod: [5, 'minutes'],
    handler: async (fileId: string) => fileId.length,
  });
  const r: number | undefined = await processFile('a');
  const migration = lock({ name: 'migration', wait: true, maxDuration: [10, 'minutes'], handler: async () => {} });
  await migration();

  // @ts-expect-error: ttlMs is a number
  await locks.acquire('k', { ttlMs: '1000' });
  const other: AcquireResult = await locks.acquire('k');
  // @ts-expect-error: the lease exists only when acquired
  void other.lease;
  // @ts-expect-error: a unit that does not exist
  lock({ name: 'x', handler: () => 1, maxDuration: [1, 'fortnights'] });
  // @ts-expect-error: the name function takes the handler's arguments
  lock({ name: (x: number) => `k${x}`, handler: (y: string) => y });
  void [token, renewed, n, info, broken, has, r];
}
void main;
