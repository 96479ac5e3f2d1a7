'use strict';
const os = require('node:os');
const native = require('./native');

// The errno name of rc: the library's, else the system's (for a code the
// library's table does not name).
function errname(rc) {
  const name = native.errname(rc);
  if (name !== 'E?')
    return name;
  for (const [n, v] of Object.entries(os.constants.errno)) {
    if (v === -rc)
      return n;
  }
  return name;
}

/**
 * An Error for a negative errno of libshmlease: `code` is the errno name
 * ('EBUSY', 'EINVAL', ...), `errno` the negative number.
 */
function shmleaseError(rc, what) {
  const err = new Error(`shmlease: ${what}: ${native.strerror(rc)}`);
  err.code = errname(rc);
  err.errno = rc;
  return err;
}

/** An EINVAL Error for bad input found before calling the library. */
function invalid(message) {
  const err = new Error(`shmlease: ${message}`);
  err.code = 'EINVAL';
  err.errno = native.constants.EINVAL;
  return err;
}

module.exports = { shmleaseError, invalid };
