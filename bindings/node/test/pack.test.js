'use strict';
// npm pack makes a package that installs without the network and works.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const stage = process.env.SHMLEASE_NODE_STAGE;
const pkgDir = path.join(__dirname, '..');

function npm(args, cwd, env = {}) {
  return execFileSync('npm', args, {
    cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false',
           npm_config_update_notifier: 'false', ...env },
  });
}

test('scripts/pack.js (npm pack), then npm install --offline of the tarball in another directory: it builds and works',
  { skip: !stage ? 'SHMLEASE_NODE_STAGE not set (run by ctest)' : false, timeout: 170000 }, () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'shmlease-pack-'));
    try {
      const tarball = execFileSync(process.execPath,
        [path.join(pkgDir, 'scripts', 'pack.js'), path.join(stage, 'node_modules'), tmp],
        { encoding: 'utf8' }).trim();
      const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
      const files = execFileSync('tar', ['tzf', tarball], { encoding: 'utf8' })
        .split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));
      for (const f of ['index.js', 'index.d.ts', 'binding.gyp', 'src/addon.cc', 'lib/locks.js', 'lib/lock.js',
                       'node_modules/node-addon-api/package.json'])
        assert.ok(files.includes(f), `${f} in the tarball`);
      assert.ok(!files.some((f) => f.startsWith('test/') || f.startsWith('build/')));
      assert.equal(pkg.version, process.env.SHMLEASE_VERSION, 'package.json version = the library version');

      // The library installed in a prefix of its own, found with pkg-config.
      const prefix = path.join(tmp, 'prefix');
      execFileSync(process.env.SHMLEASE_CMAKE || 'cmake',
        ['--install', process.env.SHMLEASE_BUILD_DIR, '--prefix', prefix], { stdio: 'ignore' });
      const pcdirs = ['lib', 'lib64', `lib/${execFileSync('gcc', ['-dumpmachine'], { encoding: 'utf8' }).trim()}`]
        .map((d) => path.join(prefix, d, 'pkgconfig')).filter((d) => fs.existsSync(d));
      assert.ok(pcdirs.length > 0, 'shmlease.pc installed');

      // Install the tarball into an application, offline, building against it.
      const app = path.join(tmp, 'app');
      fs.mkdirSync(app);
      fs.writeFileSync(path.join(app, 'package.json'), '{"name":"app","version":"1.0.0","private":true}');
      npm(['install', '--offline', '--no-save', tarball], app, {
        SHMLEASE_NODE_ADDON: '',
        SHMLEASE_INCLUDE_DIR: '',
        SHMLEASE_LIB_DIR: '',
        PKG_CONFIG_PATH: pcdirs.join(':'),
        npm_config_nodedir: process.env.SHMLEASE_NODEDIR || '/usr',
      });
      const installed = path.join(app, 'node_modules', 'shmlease');
      assert.ok(fs.existsSync(path.join(installed, 'build', 'Release', 'shmlease.node')));
      const script = `
        const { createLocks, unlinkTable } = require('shmlease');
        const table = 'nodetest-pack-' + process.pid;
        (async () => {
          const locks = createLocks({ table });
          const r = await locks.acquire('k', { ttlMs: 1000 });
          const other = await createLocks({ table }).acquire('k', { ttlMs: 1000 });
          console.log(JSON.stringify({ a: r.acquired, b: other.acquired, t: typeof r.lease.fencingToken,
                                       released: await r.lease.release() }));
          unlinkTable(table);
        })();`;
      const env = { ...process.env };
      delete env.SHMLEASE_NODE_ADDON;
      // the addon runs with the installed library (its run path), not the build's
      const ldd = execFileSync('ldd', [path.join(installed, 'build', 'Release', 'shmlease.node')], { encoding: 'utf8' });
      assert.ok(ldd.includes(`libshmlease.so.1 => ${prefix}/`), ldd);
      const res = JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: app, env, encoding: 'utf8' }));
      assert.deepEqual(res, { a: true, b: false, t: 'bigint', released: true });
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
