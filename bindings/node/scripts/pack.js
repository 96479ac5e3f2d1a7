'use strict';
// node scripts/pack.js NODE_MODULES OUTDIR: makes the package's tarball in
// OUTDIR (npm pack), with node-addon-api (from NODE_MODULES) bundled, so
// that it installs without the network: npm install --offline <tarball>.
// Prints the tarball's path.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const [modules, outdir] = process.argv.slice(2);
if (!modules || !outdir) {
  process.stderr.write('usage: node scripts/pack.js NODE_MODULES OUTDIR\n');
  process.exit(2);
}
const pkgDir = path.join(__dirname, '..');
const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'shmlease-pack-'));
try {
  for (const f of [...pkg.files, 'package.json'])
    fs.cpSync(path.join(pkgDir, f), path.join(tmp, f), { recursive: true });
  for (const dep of pkg.bundleDependencies)
    fs.cpSync(path.join(modules, dep), path.join(tmp, 'node_modules', dep), { recursive: true });
  fs.mkdirSync(outdir, { recursive: true });
  const out = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', path.resolve(outdir)],
    { cwd: tmp, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }));
  console.log(path.join(path.resolve(outdir), out[0].filename));
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
