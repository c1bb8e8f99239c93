'use strict';
// The HTTP contract shared with the Go and Python middlewares (../../contract/http.json): every
// case runs against a real node:http server wrapping middleware() and a real fake-globus; the
// package's copy of it (http-contract.json, what middleware.js reads) must be identical.
const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const http = require('http');
const path = require('path');

const { TokenChecker, TokenCheckerError, bearerToken, writeError } = require('..');
const h = require('./helpers');

const CONTRACT_FILE = path.resolve(__dirname, '..', '..', 'contract', 'http.json');
const COPY_FILE = path.resolve(__dirname, '..', 'http-contract.json');
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

/** The contract's entry for a body code and status: no_bearer_token's when they are its own. */
function entryOf(code, status) {
  const nb = contract.no_bearer_token;
  if (code === nb.code && status === nb.status) return nb;
  return contract.answers[code];
}

/** The WWW-Authenticate and Retry-After headers of an entry (null: absent). */
function headersOf(entry, realm, scopes) {
  let www = null;
  if (entry.challenge) {
    www = `Bearer realm="${realm}"`;
    if (entry.error !== null) www += `, error="${entry.error}"`;
    if (entry.scope && scopes) www += `, scope="${scopes}"`;
  }
  return { www, retry: entry.retry_after ? String(contract.retry_after_s) : null };
}

/** Asserts an error answer of the contract: headers, exact body shape and fixed message. */
function assertErrorAnswer(r, code, what, status = r.status) {
  assert.equal(r.headers.get('content-type'), 'application/json', what);
  assert.equal(r.headers.get('cache-control'), 'no-store', what);
  const entry = entryOf(code, status) || contract.answers[contract.otherwise];
  const body = JSON.parse(r.text);
  assert.deepEqual(body, { error: { code, message: entry.message } }, what);
  assert.deepEqual(Object.keys(body.error), ['code', 'message'], what);
  assert.equal(r.status, entry.status, what);
}

describe('contract file', () => {
  it('has cases, an answer for no bearer token, closed and otherwise, and every case code answered', () => {
    assert.ok(contract.cases.length > 0);
    assert.equal(contract.realm, 'api');
    assert.ok(contract.no_bearer_token.code in contract.answers);
    assert.ok(contract.closed in contract.answers);
    assert.ok(contract.otherwise in contract.answers);
    for (const c of contract.cases) {
      if (c.expect.code !== null) assert.ok(entryOf(c.expect.code, c.expect.status), c.name);
    }
  });

  it('the package ships an identical copy (http-contract.json) and middleware.js', () => {
    assert.ok(
      fs.readFileSync(COPY_FILE).equals(fs.readFileSync(CONTRACT_FILE)),
      'http-contract.json is stale: cp ../contract/http.json http-contract.json (in bindings/node)',
    );
    const files = require('../package.json').files;
    for (const f of ['index.js', 'middleware.js', 'http-contract.json']) assert.ok(files.includes(f), f);
    assert.deepEqual(require('../middleware').CONTRACT, contract);
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
      if (expect.code !== null) {
        const { www, retry } = headersOf(entryOf(expect.code, expect.status), contract.realm, checker.expectedScopes.join(' '));
        assert.equal(expect.www_authenticate, www, `${c.name}: the case disagrees with its answer`);
        assert.equal(expect.retry_after, retry, `${c.name}: the case disagrees with its answer`);
      }
    });
  }
});

describe('HTTP contract: codes no fixture reaches', () => {
  it('writeError answers every code of the contract as it says', async () => {
    const url = await serve((req, res) => {
      const code = new URL(req.url, 'http://x').searchParams.get('code');
      writeError(res, new TokenCheckerError(code, `internal detail of ${code}`, 0), { scopes: checker.expectedScopes });
    });
    for (const [code, entry] of Object.entries(contract.answers)) {
      const r = await send(`${url}/?code=${code}`);
      assertErrorAnswer(r, code, code);
      const { www, retry } = headersOf(entry, contract.realm, checker.expectedScopes.join(' '));
      assert.equal(r.headers.get('retry-after'), retry, code);
      assert.equal(r.headers.get('www-authenticate'), www, code);
    }
  });

  it('writeError answers bearerToken\'s error for no bearer credentials, TC_CLOSED, other codes and non-library errors', async () => {
    const errors = {
      missing: (() => { try { bearerToken({ headers: {} }); } catch (e) { return e; } })(),
      basic: (() => { try { bearerToken({ headers: { authorization: 'Basic x' } }); } catch (e) { return e; } })(),
      closed: new TokenCheckerError('TC_CLOSED', 'closed', -1),
      config: new TokenCheckerError('TC_INVALID_CONFIG', 'detail', 2),
      other: new Error('boom'),
    };
    const url = await serve((req, res) => {
      writeError(res, errors[new URL(req.url, 'http://x').searchParams.get('e')], { realm: 'r' });
    });
    const nb = contract.no_bearer_token;
    const otherwise = contract.answers[contract.otherwise];
    for (const [e, code, entry] of [
      ['missing', nb.code, nb],
      ['basic', nb.code, nb],
      ['closed', contract.closed, contract.answers[contract.closed]],
      ['config', 'TC_INVALID_CONFIG', otherwise],
      ['other', contract.otherwise, otherwise],
    ]) {
      const r = await send(`${url}/?e=${e}`);
      assert.equal(r.status, entry.status, e);
      assert.deepEqual(JSON.parse(r.text), { error: { code, message: entry.message } }, e);
      const { www, retry } = headersOf(entry, 'r', '');
      assert.equal(r.headers.get('www-authenticate'), www, e);
      assert.equal(r.headers.get('retry-after'), retry, e);
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
