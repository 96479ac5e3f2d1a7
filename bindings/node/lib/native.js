'use strict';
// Loads the compiled addon: the one `npm install` built beside this package,
// or, for a build tree that keeps its compiled files elsewhere (the CMake
// build of the repository), the file SHMLEASE_NODE_ADDON names.
const path = require('node:path');

const file = process.env.SHMLEASE_NODE_ADDON ||
  path.join(__dirname, '..', 'build', 'Release', 'shmlease.node');
module.exports = require(file);
