'use strict';
// The package says which library and C ABI generation it carries (package.json's version and
// nativeLibrary): they must be the library's own (the checkout's build, from Cargo.toml and
// src/lib.rs), so a version bump that forgets package.json fails here.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const path = require('path');
const { version } = require('..');
const pkg = require('../package.json');

test('package.json names the library it is built with', () => {
  assert.strictEqual(pkg.nativeLibrary.version, version(), 'nativeLibrary.version');
  assert.strictEqual(pkg.version, version(), 'the package version is the library version');
  const header = fs.readFileSync(path.join(__dirname, '..', '..', '..', 'include', 'tokenchecker.h'), 'utf8');
  const abi = Number(/^#define TOKENCHECKER_ABI_VERSION (\d+)/m.exec(header)[1]);
  assert.strictEqual(pkg.nativeLibrary.abiVersion, abi, 'nativeLibrary.abiVersion');
});
