'use strict';
// Where libshmlease is, for binding.gyp: SHMLEASE_INCLUDE_DIR and
// SHMLEASE_LIB_DIR when set (a build tree), else pkg-config (an installed
// library). The library directory is also the addon's run path, so that the
// addon finds the library it was built against.
const { execFileSync } = require('node:child_process');

function pkgConfig(args) {
  try {
    return execFileSync('pkg-config', [...args, 'shmlease'], { encoding: 'utf8' }).trim();
  } catch {
    process.stderr.write(
      'shmlease: libshmlease not found. Install it (pkg-config shmlease must work), ' +
        'or set SHMLEASE_INCLUDE_DIR and SHMLEASE_LIB_DIR to a build of it.\n');
    process.exit(1);
  }
}

const what = process.argv[2];
const inc = process.env.SHMLEASE_INCLUDE_DIR;
const lib = process.env.SHMLEASE_LIB_DIR;
if (what === 'include') {
  const dirs = inc ? [inc] : pkgConfig(['--cflags-only-I']).split(/\s+/)
    .filter(Boolean).map((f) => f.replace(/^-I/, ''));
  console.log(dirs.join(' '));
} else if (what === 'libs') {
  const dir = lib || pkgConfig(['--variable=libdir']);
  console.log(`-L${dir} -lshmlease -Wl,-rpath,${dir}`);
} else {
  process.stderr.write('usage: gyp-flags.js include|libs\n');
  process.exit(2);
}
