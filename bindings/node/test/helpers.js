'use strict';
// Test helpers: start the fake Globus server, talk to its control API, make unique tokens.
const { spawn } = require('child_process');
const path = require('path');
const readline = require('readline');
const crypto = require('crypto');

const FAKE_BIN = process.env.TOKENCHECKER_FAKE_GLOBUS ||
  path.resolve(__dirname, '..', '..', '..', 'target', 'release', 'fake-globus');

const SCOPE = 'urn:globus:auth:scope:test:all';
const ALICE_ID = 'a11ce000-0000-4000-8000-000000000001';
const ALICE_ID2 = 'a11ce000-0000-4000-8000-000000000002';
const BOB_ID = 'b0b00000-0000-4000-8000-000000000003';
const GROUP_MEMBER = '11111111-1111-4111-8111-111111111111';
const GROUP_ADMIN = '22222222-2222-4222-8222-222222222222';
const GROUP_PENDING = '33333333-3333-4333-8333-333333333333';
const TRANSFER_SCOPE = 'urn:globus:auth:scope:transfer.api.globus.org:all';
const IDENTITY = (id) => `urn:globus:auth:identity:${id}`;
const GROUP = (id) => `urn:globus:groups:id:${id}`;

/** Starts fake-globus; resolves to {url, stop(), ...control API}. */
function startFake(extraArgs = []) {
  return new Promise((resolve, reject) => {
    const proc = spawn(FAKE_BIN, ['--exit-on-stdin-eof', ...extraArgs], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let settled = false;
    const timer = setTimeout(() => {
      if (!settled) {
        settled = true;
        proc.kill('SIGKILL');
        reject(new Error('fake-globus did not print FAKE_GLOBUS_URL within 10 s'));
      }
    }, 10000);
    proc.once('error', (e) => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        reject(new Error(`cannot start fake-globus at ${FAKE_BIN}: ${e.message} ` +
          '(build it: cargo build --release -p fake-globus, or set TOKENCHECKER_FAKE_GLOBUS)'));
      }
    });
    proc.once('exit', (code) => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        reject(new Error(`fake-globus exited early with code ${code}`));
      }
    });
    const rl = readline.createInterface({ input: proc.stdout });
    rl.on('line', (line) => {
      if (settled || !line.startsWith('FAKE_GLOBUS_URL=')) return;
      settled = true;
      clearTimeout(timer);
      const url = line.slice('FAKE_GLOBUS_URL='.length).trim();
      resolve(makeFake(proc, url));
    });
  });
}

function makeFake(proc, url) {
  async function control(method, p, body) {
    const res = await fetch(url + p, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`control ${method} ${p} -> ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }
  return {
    url,
    proc,
    addTokens: (specs) => control('POST', '/_control/tokens', specs),
    removeToken: (t) => control('DELETE', `/_control/tokens/${encodeURIComponent(t)}`),
    counters: () => control('GET', '/_control/counters'),
    setFault: (f) => control('POST', '/_control/faults', f),
    clearFaults: () => control('DELETE', '/_control/faults'),
    reset: () => control('POST', '/_control/reset'),
    stop() {
      return new Promise((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.stdin.end();
        proc.kill('SIGTERM');
      });
    },
  };
}

let counter = 0;
/** A token name unique to this process and call (fits RFC 6750's b64token). */
function uniqueToken(label = 't') {
  counter += 1;
  return `tok-node-${label}-${process.pid}-${counter}-${crypto.randomBytes(4).toString('hex')}`;
}

/** Adds a fresh token with `spec` to the fake and returns its name. */
async function newToken(fake, spec = {}, label) {
  const t = uniqueToken(label);
  await fake.addTokens({ [t]: spec });
  return t;
}

function config(fake, extra = {}) {
  return {
    clientId: 'test-client',
    clientSecret: 'test-secret',
    expectedScopes: [SCOPE],
    authUrl: fake.url,
    groupsUrl: fake.url,
    ...extra,
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

module.exports = {
  FAKE_BIN, SCOPE, ALICE_ID, ALICE_ID2, BOB_ID, GROUP_MEMBER, GROUP_ADMIN, GROUP_PENDING,
  TRANSFER_SCOPE, IDENTITY, GROUP, startFake, uniqueToken, newToken, config, sleep,
};
