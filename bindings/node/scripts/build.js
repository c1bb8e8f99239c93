#!/usr/bin/env node
'use strict';
// Builds the addon offline: `node-gyp rebuild --nodedir=<dir with include/node>`.
//
// The library and its header are found, in order:
//   1. $TOKENCHECKER_LIB_DIR (libtokenchecker.so, or .a with --static), with the header from
//      $TOKENCHECKER_INCLUDE_DIR, else <lib dir>/../include (an installed or unpacked release
//      layout), else the copy this package ships (include/);
//   2. the checkout this directory sits in: ../../target/release and ../../include;
//   3. pkg-config: the libdir and includedir of tokenchecker.pc (PKG_CONFIG_PATH; the release
//      tarball's lib/pkgconfig, or scripts/install's).
// The header must declare the C ABI generation that package.json's nativeLibrary.abiVersion
// names (the generation index.js and src/addon.c are written for).
//
// node-gyp is found, in order: $NODE_GYP (a path to node-gyp.js), a local
// node_modules/node-gyp (devDependency), the copy bundled with npm (via
// $npm_execpath when run by npm, else next to the `npm` on PATH), then `node-gyp`
// on PATH. The Node headers directory is $TOKENCHECKER_NODEDIR or $npm_config_nodedir,
// else the prefix of the running node when it has include/node/node_api.h (e.g. /usr),
// else /usr or /usr/local. Nothing is downloaded.
//
// Options: --debug (Debug build), --if-needed (skip when build/Release is up to date),
// --static (link libtokenchecker.a into the addon, as the npm package's prebuilt addon is).
const fs = require('fs');
const path = require('path');
const { spawnSync, execFileSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const args = process.argv.slice(2);
const debug = args.includes('--debug');
const ifNeeded = args.includes('--if-needed');
const linkStatic = args.includes('--static');
const pkg = require(path.join(root, 'package.json'));

function fail(msg) {
  console.error(`tokenchecker build: ${msg}`);
  process.exit(1);
}

function isFile(p) {
  try { return fs.statSync(p).isFile(); } catch { return false; }
}

function findNodeGyp() {
  const candidates = [];
  if (process.env.NODE_GYP) candidates.push(process.env.NODE_GYP);
  try { candidates.push(require.resolve('node-gyp/bin/node-gyp.js', { paths: [root] })); } catch {}
  const npmCli = process.env.npm_execpath;
  if (npmCli) {
    // .../npm/bin/npm-cli.js -> .../npm/node_modules/node-gyp/bin/node-gyp.js
    candidates.push(path.resolve(path.dirname(npmCli), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  }
  // npm next to this node: <prefix>/lib/node_modules/npm
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  candidates.push(path.join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    if (!dir) continue;
    const npm = path.join(dir, 'npm');
    if (isFile(npm)) {
      try {
        const real = fs.realpathSync(npm); // .../npm/bin/npm-cli.js (or .../npm/bin/npm)
        candidates.push(path.resolve(path.dirname(real), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
      } catch {}
    }
  }
  for (const c of candidates) if (isFile(c)) return { cmd: process.execPath, pre: [c] };
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    if (dir && isFile(path.join(dir, 'node-gyp'))) return { cmd: path.join(dir, 'node-gyp'), pre: [] };
  }
  return null;
}

function findNodeDir() {
  const explicit = process.env.TOKENCHECKER_NODEDIR || process.env.npm_config_nodedir;
  if (explicit) return explicit;
  const prefixes = [path.resolve(path.dirname(process.execPath), '..'), '/usr', '/usr/local'];
  for (const p of prefixes) {
    if (isFile(path.join(p, 'include', 'node', 'node_api.h')) && isFile(path.join(p, 'include', 'node', 'common.gypi'))) {
      return p;
    }
  }
  return null;
}

function onPath(cmd) {
  if (cmd.includes('/')) return isFile(cmd);
  return (process.env.PATH || '').split(path.delimiter).some((d) => d && isFile(path.join(d, cmd)));
}

function pkgConfig(variable) {
  const r = spawnSync('pkg-config', [`--variable=${variable}`, 'tokenchecker'], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : null;
}

const libName = linkStatic ? 'libtokenchecker.a' : 'libtokenchecker.so';
// This directory is bindings/node of a checkout (not a package copied into node_modules).
const inCheckout = path.basename(root) === 'node' && path.basename(path.dirname(root)) === 'bindings' &&
  isFile(path.join(root, '..', '..', 'Cargo.toml'));
const shippedInclude = path.join(root, 'include');
const checkoutLib = path.join(root, '..', '..', 'target', 'release');
const checkoutInclude = path.join(root, '..', '..', 'include');

/** {libDir, includeDir, from}: where the library and its header are (see the top). */
function findLibrary() {
  const envInclude = process.env.TOKENCHECKER_INCLUDE_DIR;
  if (process.env.TOKENCHECKER_LIB_DIR) {
    const libDir = path.resolve(process.env.TOKENCHECKER_LIB_DIR);
    if (!isFile(path.join(libDir, libName))) {
      fail(`TOKENCHECKER_LIB_DIR=${process.env.TOKENCHECKER_LIB_DIR} holds no ${libName}`);
    }
    const installed = path.join(libDir, '..', 'include');
    const includeDir = envInclude ? path.resolve(envInclude)
      : [installed, shippedInclude, ...(inCheckout ? [checkoutInclude] : [])]
        .find((d) => isFile(path.join(d, 'tokenchecker.h'))) || installed;
    return { libDir, includeDir, from: '$TOKENCHECKER_LIB_DIR' };
  }
  if (inCheckout && isFile(path.join(checkoutLib, libName)) && isFile(path.join(checkoutInclude, 'tokenchecker.h'))) {
    return {
      libDir: path.resolve(checkoutLib),
      includeDir: path.resolve(envInclude || checkoutInclude),
      from: 'this checkout',
    };
  }
  const pcLib = pkgConfig('libdir');
  if (pcLib && isFile(path.join(pcLib, libName))) {
    return {
      libDir: path.resolve(pcLib),
      includeDir: path.resolve(envInclude || pkgConfig('includedir') || shippedInclude),
      from: 'pkg-config',
    };
  }
  fail(`${libName} not found: building the addon needs the tokenchecker library.\n` +
    (inCheckout
      ? '  Build it first, from the repository root:  cargo build --release -p tokenchecker\n'
      : '  Install it (the release tarball tokenchecker-<version>-<os>-<arch>.tar.gz, or scripts/install\n' +
        '  in a checkout) and put its lib/pkgconfig on PKG_CONFIG_PATH,\n') +
    '  or point TOKENCHECKER_LIB_DIR at the directory holding it' +
    ` (looked in: $TOKENCHECKER_LIB_DIR (unset), ${inCheckout ? `${path.resolve(checkoutLib)}, ` : ''}pkg-config tokenchecker` +
    `${pcLib ? ` (libdir ${pcLib})` : ' (not found)'})`);
  return null;
}

const { libDir, includeDir, from } = findLibrary();
const header = path.join(includeDir, 'tokenchecker.h');
if (!isFile(header)) fail(`${header} not found (set TOKENCHECKER_INCLUDE_DIR to the directory holding tokenchecker.h)`);
// The header's C ABI generation must be the one this package is written for.
const abiMatch = /^#define TOKENCHECKER_ABI_VERSION (\d+)/m.exec(fs.readFileSync(header, 'utf8'));
const wantAbi = pkg.nativeLibrary && pkg.nativeLibrary.abiVersion;
if (!abiMatch) fail(`${header} defines no TOKENCHECKER_ABI_VERSION`);
if (Number(abiMatch[1]) !== wantAbi) {
  fail(`${header} declares C ABI ${abiMatch[1]} but this package (tokenchecker ${pkg.version}) is written for ` +
    `C ABI ${wantAbi}: install the package version that matches the library, or the library it was released with`);
}

const out = path.join(root, 'build', debug ? 'Debug' : 'Release', 'tokenchecker.node');
if (ifNeeded && isFile(out)) {
  const built = fs.statSync(out).mtimeMs;
  const inputs = [path.join(root, 'src', 'addon.c'), path.join(root, 'binding.gyp'), header];
  if (inputs.every((f) => !isFile(f) || fs.statSync(f).mtimeMs <= built)) {
    console.log('tokenchecker build: up to date');
    process.exit(0);
  }
}

// node-gyp needs these; say so at once rather than with a compiler error deep in its output.
const cc = process.env.CC || 'cc';
const missing = [cc, 'make'].filter((c) => !onPath(c));
if (!process.env.PYTHON && !onPath('python3') && !onPath('python')) missing.push('python3');
if (missing.length) {
  fail(`building the addon needs a C compiler, make and python3 (node-gyp); not found on PATH: ${missing.join(', ')}`);
}

const gyp = findNodeGyp();
if (!gyp) fail('node-gyp not found (looked in node_modules, npm\'s bundled copy, PATH); set NODE_GYP=/path/to/node-gyp.js');
const nodedir = findNodeDir();
if (!nodedir) fail('Node headers not found (need <dir>/include/node/node_api.h); set TOKENCHECKER_NODEDIR=<dir>');

const gypArgs = [
  ...gyp.pre, 'rebuild', `--nodedir=${nodedir}`,
  `--tokenchecker_lib_dir=${libDir}`, `--tokenchecker_include_dir=${includeDir}`,
  `--tokenchecker_link=${linkStatic ? 'static' : 'shared'}`,
];
if (debug) gypArgs.push('--debug');
console.log(`tokenchecker build: ${path.basename(gyp.pre[0] || gyp.cmd)} rebuild --nodedir=${nodedir} ` +
  `(${linkStatic ? 'static ' : ''}library from ${from}: ${libDir}, header: ${includeDir})`);
const r = spawnSync(gyp.cmd, gypArgs, { cwd: root, stdio: 'inherit', env: { ...process.env } });
if (r.error) fail(r.error.message);
if (r.status !== 0) process.exit(r.status || 1);
try {
  execFileSync(process.execPath, ['-e', `require(${JSON.stringify(out)})`], { stdio: 'inherit' });
} catch {
  fail(`built ${out} but it does not load`);
}
console.log(`tokenchecker build: ok -> ${path.relative(process.cwd(), out)}`);
