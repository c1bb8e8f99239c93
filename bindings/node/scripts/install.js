#!/usr/bin/env node
'use strict';
// npm's install step. The npm package (scripts/package at the repository root) ships a prebuilt
// addon, prebuilds/<platform>-<arch>/tokenchecker.node, with the library linked into it; when it
// fits this machine (platform, architecture, libc and its version, Node-API version: what
// prebuilds/<platform>-<arch>/build.json says, and the file loads), it is used as is: nothing is
// compiled, no Rust or C compiler is needed. Otherwise the addon is built from source
// (scripts/build.js: node-gyp, a C compiler, the header and a library found through
// TOKENCHECKER_LIB_DIR, a checkout or pkg-config).
//
//   TOKENCHECKER_BUILD_FROM_SOURCE=1: always build (npm install --build-from-source too, with a
//   warning from npm 11, which calls it an unknown option).
//   TOKENCHECKER_ADDON=/path/to/tokenchecker.node: nothing to do (index.js loads that file).
//
// index.js loads build/Release/tokenchecker.node when a source build made one, else the
// prebuilt addon: so the package works even when npm runs no install scripts.
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const tag = `${process.platform}-${process.arch}`;
const prebuiltDir = path.join(root, 'prebuilds', tag);
const prebuilt = path.join(prebuiltDir, 'tokenchecker.node');

function log(msg) {
  console.log(`tokenchecker install: ${msg}`);
}

function truthy(v) {
  return v !== undefined && v !== '' && v !== '0' && v !== 'false';
}

/** "2.34" >= "2.17"? */
function versionAtLeast(have, want) {
  const h = String(have).split('.').map(Number);
  const w = String(want).split('.').map(Number);
  for (let i = 0; i < Math.max(h.length, w.length); i++) {
    const a = h[i] || 0;
    const b = w[i] || 0;
    if (a !== b) return a > b;
  }
  return true;
}

/** Why the prebuilt addon does not fit this machine, or null when it does. */
function misfit() {
  let info;
  try {
    info = JSON.parse(fs.readFileSync(path.join(prebuiltDir, 'build.json'), 'utf8'));
  } catch {
    return `no prebuilt addon for ${tag} in this package`;
  }
  if (!fs.existsSync(prebuilt)) return `${prebuilt} is missing`;
  if (info.platform !== process.platform || info.arch !== process.arch) {
    return `the prebuilt addon is for ${info.platform}-${info.arch}`;
  }
  const napi = Number(process.versions.napi || 0);
  if (napi < info.napi) return `the prebuilt addon needs Node-API ${info.napi}, this Node has ${napi}`;
  if (info.libc === 'glibc') {
    const report = process.report && process.report.getReport();
    const glibc = report && report.header && report.header.glibcVersionRuntime;
    if (!glibc) return 'the prebuilt addon needs glibc, and this system has another C library';
    if (!versionAtLeast(glibc, info.glibc)) {
      return `the prebuilt addon needs glibc >= ${info.glibc}, this system has ${glibc}`;
    }
  }
  // The proof: load it (in another process: a failed dlopen can leave state behind).
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(prebuilt)})`], { encoding: 'utf8' });
  if (r.status !== 0) {
    return `the prebuilt addon does not load: ${(r.stderr || r.error || '').toString().trim().split('\n').slice(0, 6).join(' ')}`;
  }
  return null;
}

function buildFromSource(reason) {
  log(`building the addon from source (${reason})`);
  const r = spawnSync(process.execPath, [path.join(__dirname, 'build.js'), '--if-needed'], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(
      'tokenchecker install: the addon could not be built from source (see above). ' +
      `Without a prebuilt addon for this machine, it needs the tokenchecker library (TOKENCHECKER_LIB_DIR, ` +
      'or pkg-config with PKG_CONFIG_PATH), a C compiler, make, python3 and the Node headers.');
  }
  process.exit(r.status === null ? 1 : r.status);
}

if (process.env.TOKENCHECKER_ADDON) {
  log(`TOKENCHECKER_ADDON is set (${process.env.TOKENCHECKER_ADDON}): nothing to build`);
  process.exit(0);
}
if (truthy(process.env.TOKENCHECKER_BUILD_FROM_SOURCE) || truthy(process.env.npm_config_build_from_source)) {
  buildFromSource('TOKENCHECKER_BUILD_FROM_SOURCE is set');
}
const why = misfit();
if (why) buildFromSource(why);
// A source build left by an earlier install would win over the prebuilt addon in index.js.
// (Only a packed package has prebuilds/, never a checkout, whose build/ this would be.)
fs.rmSync(path.join(root, 'build'), { recursive: true, force: true });
log(`using the prebuilt addon ${path.relative(root, prebuilt)} (nothing to compile)`);
