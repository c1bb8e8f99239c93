'use strict';
// The HTTP contract shared with the Go middleware (../../contract/http.json): every case runs
// against a real node:http server wrapping middleware() and a real fake-globus.
const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const http = require('http');
const path = require('path');

const { TokenChecker, TokenCheckerError, writeError } = require('..');
const h = require('./helpers');

const CONTRACT_FILE = path.resolve(__dirname, '..', '..', 'contract', 'http.json');
const contract = JSON.parse(fs.readFileSync(CONTRACT_FILE, 'utf8'));

let fake;
let checker;
let base;
const routes = new Map(); // JSON of request.require (or '') -> middleware

before(async () => {
  fake = await h.startFake();
  // The contract's checker: test-client/test-secret, its one scope, the fake for both URLs,
  // verify_credentials false, default realm.
  checker = new TokenChecker({
    clientId: 'test-client',
    clientSecret: 'test-secret',
    expectedScopes: ['urn:globus:auth:scope:test:all'],
    authUrl: fake.url,
    groupsUrl: fake.url,
    verifyCredentials: false,
  });
  base = await serve(async (req, res) => {
    const mw = routes.get(new URL(req.url, 'http://x').searchParams.get('route') || '');
    if (!(await mw(req, res))) return;
    res.setHeader('content-type', 'text/plain');
    res.end(req.authState.effectiveIdentity);
  });
});

afterEach(async () => {
  await fake.clearFaults();
});

const servers = [];
after(async () => {
  for (const s of servers) await new Promise((r) => s.close(r));
  if (checker) checker.close();
  if (fake) await fake.stop();
});

function serve(handler) {
  return new Promise((resolve) => {
    const server = http.createServer(handler);
    server.keepAliveTimeout = 100;
    servers.push(server);
    server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${server.address().port}`));
  });
}

/** The route of a case: middleware() or middleware({allowedPrincipals: require}). */
function route(require) {
  const key = require ? JSON.stringify(require) : '';
  if (!routes.has(key)) {
    routes.set(key, require ? checker.middleware({ allowedPrincipals: require }) : checker.middleware());
  }
  return key;
}

async function send(url, authorization) {
  const res = await fetch(url, { headers: authorization === undefined ? {} : { authorization } });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** Asserts an error answer of the contract: headers, exact body shape and fixed message. */
function assertErrorAnswer(r, code, what) {
  assert.equal(r.headers.get('content-type'), 'application/json', what);
  assert.equal(r.headers.get('cache-control'), 'no-store', what);
  const body = JSON.parse(r.text);
  assert.deepEqual(body, { error: { code, message: contract.messages[code] } }, what);
  assert.deepEqual(Object.keys(body.error), ['code', 'message'], what);
  assert.equal(r.status, contract.statuses[code], what);
}

describe('contract file', () => {
  it('has cases, and a message and status for every code', () => {
    assert.ok(contract.cases.length > 0);
    assert.equal(contract.realm, 'api');
    assert.deepEqual(Object.keys(contract.messages).sort(), Object.keys(contract.statuses).sort());
    for (const c of contract.cases) {
      if (c.expect.code !== null) assert.ok(c.expect.code in contract.messages, c.name);
    }
  });
});

describe('HTTP contract: every case against fake-globus', () => {
  for (const c of contract.cases) {
    it(c.name, async () => {
      const { request, expect } = c;
      let authorization = request.authorization;
      if (authorization === undefined && request.token !== undefined) {
        const token = request.token === 'fresh' ? await h.newToken(fake, {}, 'contract') : request.token;
        authorization = `Bearer ${token}`;
      }
      if (request.fault) await fake.setFault(request.fault);
      const r = await send(`${base}/resource?route=${encodeURIComponent(route(request.require))}`, authorization);
      assert.equal(r.status, expect.status, `${c.name}: ${r.text}`);
      assert.equal(r.headers.get('www-authenticate'), expect.www_authenticate, c.name);
      assert.equal(r.headers.get('retry-after'), expect.retry_after, c.name);
      if (expect.code === null) {
        assert.equal(r.status, 200);
        assert.match(r.text, /^urn:globus:auth:identity:[0-9a-f-]{36}$/, c.name);
      } else {
        assertErrorAnswer(r, expect.code, c.name);
      }
      if (expect.retry_after !== null) assert.equal(expect.retry_after, String(contract.retry_after_s));
    });
  }
});

describe('HTTP contract: codes no fixture reaches', () => {
  it('writeError answers every code of the contract as it says', async () => {
    const url = await serve((req, res) => {
      const code = new URL(req.url, 'http://x').searchParams.get('code');
      writeError(res, new TokenCheckerError(code, `internal detail of ${code}`, 0), { scopes: checker.expectedScopes });
    });
    for (const code of Object.keys(contract.statuses)) {
      const r = await send(`${url}/?code=${code}`);
      assertErrorAnswer(r, code, code);
      const status = contract.statuses[code];
      assert.equal(r.headers.get('retry-after'), status === 503 ? String(contract.retry_after_s) : null, code);
      if (status === 401 || code === 'TC_INSUFFICIENT_SCOPE') {
        assert.match(r.headers.get('www-authenticate'), /^Bearer realm="api", error="[a-z_]+"/, code);
      } else {
        assert.equal(r.headers.get('www-authenticate'), null, code);
      }
    }
  });

  it('rejected client credentials (a real TC_CREDENTIALS_REJECTED) -> 503 with the generic message', async () => {
    const wrong = new TokenChecker(h.config(fake, { clientSecret: 'wrong', verifyCredentials: false }));
    const url = await serve(async (req, res) => {
      if (await mw(req, res)) res.end('no');
    });
    const mw = wrong.middleware();
    const r = await send(url, `Bearer ${await h.newToken(fake, {}, 'creds')}`);
    assert.equal(r.status, 503);
    assert.equal(r.headers.get('retry-after'), '5');
    assert.equal(r.headers.get('www-authenticate'), null);
    assertErrorAnswer(r, 'TC_CREDENTIALS_REJECTED', 'credentials');
    wrong.close();
  });
});
