'use strict';
const native = require('./native');

/**
 * An Error for a negative errno of libshmlease: `code` is the errno name
 * ('EBUSY', 'EINVAL', ...), `errno` the negative number.
 */
function shmleaseError(rc, what) {
  const err = new Error(`shmlease: ${what}: ${native.strerror(rc)}`);
  err.code = native.errname(rc);
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
