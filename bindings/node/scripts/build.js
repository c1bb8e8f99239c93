#!/usr/bin/env node
'use strict';
// Builds the addon offline: `node-gyp rebuild --nodedir=<dir with include/node>`.
//
// node-gyp is found, in order: $NODE_GYP (a path to node-gyp.js), a local
// node_modules/node-gyp (devDependency), the copy bundled with npm (via
// $npm_execpath when run by npm, else next to the `npm` on PATH), then `node-gyp`
// on PATH. The Node headers directory is $TOKENCHECKER_NODEDIR or $npm_config_nodedir,
// else the prefix of the running node when it has include/node/node_api.h (e.g. /usr),
// else /usr or /usr/local. Nothing is downloaded.
//
// Options: --debug (Debug build), --if-needed (skip when build/Release is up to date).
const fs = require('fs');
const path = require('path');
const { spawnSync, execFileSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const args = process.argv.slice(2);
const debug = args.includes('--debug');
const ifNeeded = args.includes('--if-needed');

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

const libDir = path.resolve(process.env.TOKENCHECKER_LIB_DIR || path.join(root, '..', '..', 'target', 'release'));
const includeDir = path.resolve(process.env.TOKENCHECKER_INCLUDE_DIR || path.join(root, '..', '..', 'include'));
if (!isFile(path.join(libDir, 'libtokenchecker.so'))) {
  fail(`${path.join(libDir, 'libtokenchecker.so')} not found.\n` +
    '  Build the library first, from the repository root:  cargo build --release -p tokenchecker\n' +
    '  (or point TOKENCHECKER_LIB_DIR at the directory holding libtokenchecker.so)');
}
if (!isFile(path.join(includeDir, 'tokenchecker.h'))) fail(`${includeDir}/tokenchecker.h not found`);

const out = path.join(root, 'build', debug ? 'Debug' : 'Release', 'tokenchecker.node');
if (ifNeeded && isFile(out)) {
  const built = fs.statSync(out).mtimeMs;
  const inputs = [path.join(root, 'src', 'addon.c'), path.join(root, 'binding.gyp'), path.join(includeDir, 'tokenchecker.h')];
  if (inputs.every((f) => !isFile(f) || fs.statSync(f).mtimeMs <= built)) {
    console.log('tokenchecker build: up to date');
    process.exit(0);
  }
}

const gyp = findNodeGyp();
if (!gyp) fail('node-gyp not found (looked in node_modules, npm\'s bundled copy, PATH); set NODE_GYP=/path/to/node-gyp.js');
const nodedir = findNodeDir();
if (!nodedir) fail('Node headers not found (need <dir>/include/node/node_api.h); set TOKENCHECKER_NODEDIR=<dir>');

const gypArgs = [
  ...gyp.pre, 'rebuild', `--nodedir=${nodedir}`,
  `--tokenchecker_lib_dir=${libDir}`, `--tokenchecker_include_dir=${includeDir}`,
];
if (debug) gypArgs.push('--debug');
console.log(`tokenchecker build: ${path.basename(gyp.pre[0] || gyp.cmd)} rebuild --nodedir=${nodedir} (library: ${libDir})`);
const r = spawnSync(gyp.cmd, gypArgs, { cwd: root, stdio: 'inherit', env: { ...process.env } });
if (r.error) fail(r.error.message);
if (r.status !== 0) process.exit(r.status || 1);
try {
  execFileSync(process.execPath, ['-e', `require(${JSON.stringify(out)})`], { stdio: 'inherit' });
} catch {
  fail(`built ${out} but it does not load`);
}
console.log(`tokenchecker build: ok -> ${path.relative(process.cwd(), out)}`);
