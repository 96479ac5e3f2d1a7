'use strict';
// index.d.ts: the documented uses type-check, misuses do not (tsc --strict).
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const stage = process.env.SHMLEASE_NODE_STAGE;
const tsc = stage && path.join(stage, 'node_modules', 'typescript', 'bin', 'tsc');

test('index.d.ts type-checks the documented uses, and refuses misuses', { skip: !tsc || !fs.existsSync(tsc) ? 'no TypeScript in SHMLEASE_NODE_STAGE' : false }, () => {
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(__dirname, 'types'),
    '--typeRoots', path.join(stage, 'node_modules', '@types')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
