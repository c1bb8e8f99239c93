#!/usr/bin/env node
'use strict';
// Makes the prebuilt addon of the npm package (scripts/package at the repository root runs it
// in a staging copy of this directory, with TOKENCHECKER_LIB_DIR and TOKENCHECKER_INCLUDE_DIR
// pointing into the release tarball): builds the addon with libtokenchecker.a linked in
// (build.js --static), and moves it to prebuilds/<platform>-<arch>/tokenchecker.node, stripped,
// beside a build.json that scripts/install.js compares with the installing machine:
//
//   {"platform": "linux", "arch": "x64", "libc": "glibc", "glibc": "2.34", "napi": 8,
//    "libraryVersion": "0.1.0", "abiVersion": 2, "link": "static"}
//
// "glibc" is the newest GLIBC_x.y symbol version the addon needs (readelf). Leaves no build/.
const fs = require('fs');
const path = require('path');
const { spawnSync, execFileSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const pkg = require(path.join(root, 'package.json'));

function fail(msg) {
  console.error(`tokenchecker prebuild: ${msg}`);
  process.exit(1);
}

const r = spawnSync(process.execPath, [path.join(__dirname, 'build.js'), '--static'], { cwd: root, stdio: 'inherit' });
if (r.status !== 0) fail('the static build failed');
const built = path.join(root, 'build', 'Release', 'tokenchecker.node');
const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
fs.rmSync(dir, { recursive: true, force: true });
fs.mkdirSync(dir, { recursive: true });
const dest = path.join(dir, 'tokenchecker.node');
const strip = spawnSync('strip', ['--strip-unneeded', '-o', dest, built]);
if (strip.status !== 0) fs.copyFileSync(built, dest);

const info = {
  platform: process.platform,
  arch: process.arch,
  napi: Number(/NAPI_VERSION=(\d+)/.exec(fs.readFileSync(path.join(root, 'binding.gyp'), 'utf8'))[1]),
  libraryVersion: pkg.nativeLibrary.version,
  abiVersion: pkg.nativeLibrary.abiVersion,
  link: 'static',
};
if (process.platform === 'linux') {
  const syms = execFileSync('readelf', ['--dyn-syms', '--wide', dest], { encoding: 'utf8' });
  const versions = [...syms.matchAll(/@GLIBC_(\d+(?:\.\d+)+)/g)].map((m) => m[1]);
  if (versions.length === 0) fail(`${dest} needs no glibc symbol version: not a glibc build?`);
  versions.sort((a, b) => {
    const x = a.split('.').map(Number);
    const y = b.split('.').map(Number);
    return x[0] - y[0] || (x[1] || 0) - (y[1] || 0) || (x[2] || 0) - (y[2] || 0);
  });
  info.libc = 'glibc';
  info.glibc = versions[versions.length - 1];
  // The library must be inside, not a dependency.
  const needed = execFileSync('readelf', ['--dynamic', '--wide', dest], { encoding: 'utf8' });
  if (/NEEDED.*libtokenchecker/.test(needed)) fail(`${dest} depends on libtokenchecker.so: not linked statically`);
}
fs.writeFileSync(path.join(dir, 'build.json'), `${JSON.stringify(info, null, 2)}\n`);
fs.rmSync(path.join(root, 'build'), { recursive: true, force: true });
// It loads, and reports the library it carries.
const v = execFileSync(process.execPath, ['-p', `require(${JSON.stringify(dest)}).version()`], { encoding: 'utf8' }).trim();
if (v !== info.libraryVersion) fail(`the prebuilt addon carries library ${v}, package.json says ${info.libraryVersion}`);
console.log(`tokenchecker prebuild: ${path.relative(root, dest)} (${(fs.statSync(dest).size / 1048576).toFixed(1)} MiB; ` +
  `${info.libc ? `glibc >= ${info.glibc}, ` : ''}Node-API ${info.napi}, library ${v}, C ABI ${info.abiVersion})`);
