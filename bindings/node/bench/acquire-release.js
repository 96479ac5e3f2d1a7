'use strict';
// Uncontended acquire+release per call from Node.js, beside proper-lockfile
// (the usual file lock of npm) and, when given the C benchmark, the same pair
// called from C in the same run.
//
//   node bench/acquire-release.js [--quick] [--modules DIR] [--c-bench PATH]
//
// --modules: the node_modules holding proper-lockfile (default: the
// package's own, or $SHMLEASE_NODE_STAGE/node_modules); --c-bench: the
// shmlease-bench program (its "uncontended" scenario gives the C figure).
// Markdown on stdout. Each figure is the median over batches of the time
// per pair of calls.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { createLocks, unlinkTable } = require('..');

const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const quick = args.includes('--quick');
const BATCHES = quick ? 5 : 21;

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

// ns per call of fn (async), median over batches of n calls each.
async function measure(n, fn) {
  for (let i = 0; i < Math.min(n, 1000); i++)
    await fn();                                   // warm-up
  const per = [];
  for (let b = 0; b < BATCHES; b++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++)
      await fn();
    per.push(Number(process.hrtime.bigint() - t0) / n);
  }
  return median(per);
}

function measureSync(n, fn) {
  for (let i = 0; i < Math.min(n, 1000); i++)
    fn();
  const per = [];
  for (let b = 0; b < BATCHES; b++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++)
      fn();
    per.push(Number(process.hrtime.bigint() - t0) / n);
  }
  return median(per);
}

function findProperLockfile() {
  const dirs = [opt('--modules'), path.join(__dirname, '..', 'node_modules'),
    process.env.SHMLEASE_NODE_STAGE && path.join(process.env.SHMLEASE_NODE_STAGE, 'node_modules')];
  for (const d of dirs.filter(Boolean)) {
    const p = path.join(d, 'proper-lockfile');
    if (fs.existsSync(p))
      return require(p);
  }
  return null;
}

// The C figure: the shmlease row of shmlease-bench's uncontended table.
function cFigure(bin) {
  const csv = fs.mkdtempSync(path.join(os.tmpdir(), 'shmlease-bench-c-'));
  let out;
  try {
    out = execFileSync(bin, ['--quick', '--no-redis', '--scenarios', 'uncontended', '--out', csv],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } finally {
    fs.rmSync(csv, { recursive: true, force: true });
  }
  const row = out.split('\n').find((l) => l.startsWith('| shmlease |'));
  const m = row && row.match(/\|\s*([\d.]+) (ns|us)\s*\|/);
  if (!m)
    throw new Error('no shmlease row in the C benchmark output');
  return Number(m[1]) * (m[2] === 'us' ? 1000 : 1);
}

const fmt = (ns) => (ns >= 10000 ? `${(ns / 1000).toFixed(1)} us` : `${ns.toFixed(0)} ns`);

async function main() {
  const rows = [];
  const table = `nodebench-${process.pid}`;
  const locks = createLocks({ table });
  const n = quick ? 2000 : 50000;
  let k = 0;
  rows.push(['shmlease, Node', 'await locks.acquire(key, { ttlMs }) + await lease.release()',
    await measure(n, async () => {
      const r = await locks.acquire('bench', { ttlMs: 10000 });
      if (!r.acquired)
        throw new Error('not acquired');
      await r.lease.release();
    })]);
  rows.push(['shmlease, Node, withLease', 'await locks.withLease(key, { ttlMs }, fn)',
    await measure(n, () => locks.withLease('bench', { ttlMs: 10000 }, () => k++))]);
  await locks.close();
  unlinkTable(table);

  const lockfile = findProperLockfile();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shmlease-bench-'));
  const file = path.join(dir, 'resource');
  fs.writeFileSync(file, '');
  if (lockfile) {
    const m = quick ? 100 : 2000;
    rows.push(['proper-lockfile', 'await lock(file) + await release()',
      await measure(m, async () => {
        const release = await lockfile.lock(file, { realpath: false });
        await release();
      })]);
    rows.push(['proper-lockfile, sync', 'lockSync(file) + unlockSync(file)',
      measureSync(m, () => {
        lockfile.lockSync(file, { realpath: false });
        lockfile.unlockSync(file, { realpath: false });
      })]);
  } else {
    rows.push(['proper-lockfile', 'not installed (npm install proper-lockfile)', NaN]);
  }
  fs.rmSync(dir, { recursive: true, force: true });

  const cbin = opt('--c-bench');
  if (cbin && !fs.existsSync(cbin))
    console.error(`${cbin} not built: no C figure`);
  else if (cbin)
    rows.push(['shmlease, C', 'shmlease_acquire(wait_ms=0) + shmlease_release', cFigure(cbin)]);

  const base = rows.find((r) => r[0] === 'shmlease, C');
  console.log(`Uncontended acquire+release per call, node ${process.version}, ${os.cpus().length} CPUs, ` +
              `load ${os.loadavg()[0].toFixed(2)}${quick ? ' (--quick)' : ''}\n`);
  console.log(`| lock | calls | per pair | vs C |\n|---|---|---:|---:|`);
  for (const [name, what, ns] of rows) {
    const vs = base && Number.isFinite(ns) ? `${(ns / base[2]).toFixed(1)}x` : '';
    console.log(`| ${name} | ${what} | ${Number.isFinite(ns) ? fmt(ns) : '-'} | ${vs} |`);
  }
  const node = rows[0][2];
  if (base)
    console.log(`\nNode overhead over C: ${fmt(node - base[2])} per acquire+release.`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
