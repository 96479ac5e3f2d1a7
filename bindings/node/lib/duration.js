'use strict';
const { invalid } = require('./errors');

const UNITS = {
  ms: 1, millisecond: 1, milliseconds: 1,
  s: 1000, second: 1000, seconds: 1000,
  m: 60000, minute: 60000, minutes: 60000,
  h: 3600000, hour: 3600000, hours: 3600000,
  d: 86400000, day: 86400000, days: 86400000,
};

/**
 * A duration in ms: a number of ms, or a tuple [n, unit] such as
 * [10, "minutes"] (units: ms, seconds, minutes, hours, days, singular or
 * plural, or s/m/h/d). Returns a whole number of ms; throws EINVAL otherwise.
 */
function toMs(value, what) {
  let ms;
  if (typeof value === 'number') {
    ms = value;
  } else if (Array.isArray(value) && value.length === 2 && typeof value[0] === 'number' &&
             typeof value[1] === 'string' && Object.hasOwn(UNITS, value[1])) {
    ms = value[0] * UNITS[value[1]];
  } else {
    throw invalid(`${what} must be a number of ms or [n, unit] (unit: ms, seconds, ` +
                  `minutes, hours, days), not ${JSON.stringify(value)}`);
  }
  if (!Number.isFinite(ms) || ms < 0)
    throw invalid(`${what} must be a finite duration >= 0, not ${JSON.stringify(value)}`);
  return Math.ceil(ms);
}

module.exports = { toMs };
