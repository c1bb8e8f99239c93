'use strict';
// The middleware against a real node:http server and the real fake Globus server.
const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const http = require('http');

const { TokenChecker, TokenCheckerError } = require('..');
const h = require('./helpers');

let fake;
let checker;
let servers = [];

before(async () => {
  fake = await h.startFake();
  checker = new TokenChecker(h.config(fake, { maxRetries: 0 }));
});

afterEach(async () => {
  await fake.clearFaults();
});

after(async () => {
  for (const s of servers) await new Promise((r) => s.close(r));
  if (checker) checker.close();
  if (fake) await fake.stop();
});

/** Starts an http server whose handler is `handler(req, res)`; resolves to its base URL. */
function serve(handler) {
  return new Promise((resolve) => {
    const server = http.createServer(handler);
    server.keepAliveTimeout = 100;
    servers.push(server);
    server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${server.address().port}`));
  });
}

/** A handler in the Express style: middleware(req, res, next) then the route. */
function withNext(mw, seen) {
  return (req, res) => {
    let calls = 0;
    mw(req, res, (err) => {
      calls++;
      assert.equal(err, undefined);
      assert.equal(calls, 1);
      seen.push(req.authState);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ user: req.authState.username, matched: req.authState.authorization?.matched ?? null }));
    });
  };
}

async function get(base, headers = {}) {
  const res = await fetch(`${base}/resource`, { headers });
  const text = await res.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: res.status, headers: res.headers, body };
}

const bearer = (t) => ({ authorization: `Bearer ${t}` });

describe('middleware (check only)', () => {
  let base;
  const seen = [];
  before(async () => {
    base = await serve(withNext(checker.middleware({ realm: 'test-api' }), seen));
  });

  it('missing header -> 401, WWW-Authenticate, and no introspection', async () => {
    const before = (await fake.counters()).introspect;
    const r = await get(base);
    assert.equal(r.status, 401);
    assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="test-api"');
    assert.equal(r.body.error.code, 'TC_MISSING_TOKEN');
    assert.equal(typeof r.body.error.message, 'string');
    const other = await get(base, { authorization: 'Basic dGVzdDp0ZXN0' });
    assert.equal(other.status, 401);
    assert.equal(other.body.error.code, 'TC_MISSING_TOKEN');
    assert.equal((await fake.counters()).introspect, before);
  });

  it('malformed header -> 401 invalid_request, no introspection', async () => {
    const before = (await fake.counters()).introspect;
    for (const value of ['Bearer', 'Bearer ', 'Bearer a b', 'Bearer a,b', 'Bearer "quoted"']) {
      const r = await get(base, { authorization: value });
      assert.equal(r.status, 401, value);
      assert.equal(r.body.error.code, 'TC_INVALID_REQUEST', value);
      assert.match(r.headers.get('www-authenticate'), /^Bearer realm="test-api", error="invalid_request"$/);
    }
    assert.equal((await fake.counters()).introspect, before);
  });

  it('valid token -> the handler sees req.authState', async () => {
    const r = await get(base, bearer('tok-valid'));
    assert.equal(r.status, 200);
    assert.equal(r.body.user, 'alice@example.org');
    const state = seen[seen.length - 1];
    assert.equal(state.sub, h.ALICE_ID);
    assert.deepEqual(state.identities, [h.ALICE_ID, h.ALICE_ID2]);
    const lower = await get(base, { authorization: 'bearer tok-bob' });
    assert.equal(lower.status, 200);
    assert.equal(lower.body.user, 'bob@example.org');
  });

  it('token failures -> 401 with WWW-Authenticate', async () => {
    const cases = [
      ['tok-inactive', 'TC_INACTIVE_TOKEN', 'invalid_token'],
      [h.uniqueToken('unknown'), 'TC_INACTIVE_TOKEN', 'invalid_token'],
      ['tok-expired', 'TC_TOKEN_EXPIRED', 'invalid_token'],
      ['tok-wrong-aud', 'TC_WRONG_AUDIENCE', 'invalid_token'],
      ['tok-wrong-scope', 'TC_INSUFFICIENT_SCOPE', 'insufficient_scope'],
    ];
    for (const [token, code, error] of cases) {
      const r = await get(base, bearer(token));
      assert.equal(r.status, 401, code);
      assert.equal(r.body.error.code, code);
      assert.equal(r.headers.get('www-authenticate'), `Bearer realm="test-api", error="${error}"`);
      assert.match(r.headers.get('content-type'), /application\/json/);
    }
  });

  it('a token over maxTokenBytes -> 401 TC_INVALID_ARGUMENT, not echoed', async () => {
    const small = new TokenChecker(h.config(fake, { maxTokenBytes: 64 }));
    const url = await serve(withNext(small.middleware(), []));
    const token = `secret${'x'.repeat(200)}`;
    const r = await get(url, bearer(token));
    assert.equal(r.status, 401);
    assert.equal(r.body.error.code, 'TC_INVALID_ARGUMENT');
    assert.ok(!JSON.stringify(r.body).includes('secretxxx'));
    small.close();
  });

  it('auth server unavailable on a fresh token -> 503', async () => {
    const t = await h.newToken(fake);
    await fake.setFault({ endpoint: 'introspect', status: 503 });
    const r = await get(base, bearer(t));
    assert.equal(r.status, 503);
    assert.equal(r.body.error.code, 'TC_AUTH_UNAVAILABLE');
    assert.equal(r.headers.get('www-authenticate'), null);
  });

  it('many concurrent requests for one fresh token: 1 introspection', async () => {
    const t = await h.newToken(fake, { username: 'crowd@example.org' });
    await fake.setFault({ endpoint: 'introspect', latency_ms: 200 });
    const before = (await fake.counters()).introspect;
    const results = await Promise.all(Array.from({ length: 50 }, () => get(base, bearer(t))));
    for (const r of results) assert.equal(r.body.user, 'crowd@example.org');
    assert.equal((await fake.counters()).introspect - before, 1);
  });
});

describe('middleware with allowedPrincipals', () => {
  let base;
  const seen = [];
  before(async () => {
    base = await serve(withNext(checker.middleware({
      allowedPrincipals: [h.IDENTITY(h.ALICE_ID2), h.GROUP(h.GROUP_ADMIN)],
    }), seen));
  });

  it('allowed -> 200 with authorization, not allowed -> 403', async () => {
    const ok = await get(base, bearer('tok-valid'));
    assert.equal(ok.status, 200);
    assert.equal(ok.body.matched, h.IDENTITY(h.ALICE_ID2));
    const no = await get(base, bearer('tok-bob'));
    assert.equal(no.status, 403);
    assert.equal(no.body.error.code, 'TC_NOT_AUTHORIZED');
    const bad = await get(base, bearer('tok-inactive'));
    assert.equal(bad.status, 401);
    assert.equal(bad.headers.get('www-authenticate'), 'Bearer realm="api", error="invalid_token"');
  });

  it('group membership decides; groups down -> 503', async () => {
    const member = await h.newToken(fake, { groups: [h.GROUP_ADMIN] });
    const r = await get(base, bearer(member));
    assert.equal(r.status, 200);
    assert.equal(r.body.matched, h.GROUP(h.GROUP_ADMIN));
    const other = await h.newToken(fake, { groups: [h.GROUP_ADMIN] });
    await fake.setFault({ endpoint: 'groups', status: 500 });
    const down = await get(base, bearer(other));
    assert.equal(down.status, 503);
    assert.equal(down.body.error.code, 'TC_AUTH_UNAVAILABLE');
  });

  it('public', async () => {
    const url = await serve(withNext(checker.middleware({ allowedPrincipals: ['public'], allowPublic: true }), []));
    const r = await get(url, bearer('tok-bob'));
    assert.equal(r.status, 200);
    assert.equal(r.body.matched, 'public');
  });
});

describe('middleware without next (plain http)', () => {
  it('resolves true/false; the handler answers only when allowed', async () => {
    const auth = checker.middleware();
    const base = await serve(async (req, res) => {
      if (!(await auth(req, res))) return;
      res.end(`hello ${req.authState.name}`);
    });
    const ok = await get(base, bearer('tok-valid'));
    assert.equal(ok.status, 200);
    assert.equal(ok.body, 'hello Alice');
    const no = await get(base);
    assert.equal(no.status, 401);
    const inactive = await get(base, bearer('tok-inactive'));
    assert.equal(inactive.status, 401);
  });

  it('property option names the request field', async () => {
    const auth = checker.middleware({ property: 'auth' });
    const base = await serve(async (req, res) => {
      if (await auth(req, res)) res.end(req.auth.username);
    });
    assert.equal((await get(base, bearer('tok-bob'))).body, 'bob@example.org');
  });

  it('a closed checker answers 503', async () => {
    const c = new TokenChecker(h.config(fake));
    const auth = c.middleware();
    c.close();
    const base = await serve(async (req, res) => {
      if (await auth(req, res)) res.end('no');
    });
    const r = await get(base, bearer('tok-valid'));
    assert.equal(r.status, 503);
    assert.equal(r.body.error.code, 'TC_CLOSED');
  });
});

describe('middleware options', () => {
  it('rejects unknown options and bad principals at creation', () => {
    assert.throws(() => checker.middleware({ allowed: ['x'] }), TokenCheckerError);
    assert.throws(() => checker.middleware({ allowedPrincipals: 'public' }), { code: 'TC_INVALID_ARGUMENT' });
    assert.throws(() => checker.middleware({ allowedPrincipals: [], allowPublic: 'yes' }), { code: 'TC_INVALID_ARGUMENT' });
    assert.equal(typeof checker.middleware(), 'function');
    assert.equal(checker.middleware().length, 3);
  });
});
