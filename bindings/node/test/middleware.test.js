'use strict';
// The middleware against a real node:http server and the real fake Globus server.
const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const http = require('http');
const net = require('net');

const { TokenChecker, TokenCheckerError, bearerToken, writeError } = require('..');
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

  it('no bearer credentials -> 401 with a bare challenge, TC_INVALID_ARGUMENT, no introspection', async () => {
    const before = (await fake.counters()).introspect;
    const values = [undefined, 'Basic dGVzdDp0ZXN0', 'Token tok-valid', 'Bearertok-valid', ''];
    for (const value of values) {
      const r = await get(base, value === undefined ? {} : { authorization: value });
      const what = String(value);
      assert.equal(r.status, 401, what);
      assert.deepEqual(r.body, { error: { code: 'TC_INVALID_ARGUMENT', message: 'the request has no bearer token' } }, what);
      assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="test-api"', what);
      assert.equal(r.headers.get('content-type'), 'application/json', what);
      assert.equal(r.headers.get('cache-control'), 'no-store', what);
    }
    assert.equal((await fake.counters()).introspect, before);
  });

  it('malformed bearer credentials -> 400 invalid_request TC_INVALID_ARGUMENT, no introspection', async () => {
    const before = (await fake.counters()).introspect;
    const values = ['Bearer', 'Bearer ', 'Bearer a b', 'Bearer\ttok-valid', 'Bearer tok\tvalid', 'Bearer tok-valid\u00e9'];
    for (const value of values) {
      const r = await get(base, { authorization: value });
      assert.equal(r.status, 400, value);
      assert.deepEqual(r.body, { error: { code: 'TC_INVALID_ARGUMENT', message: "the request's bearer token is malformed" } }, value);
      assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="test-api", error="invalid_request"', value);
      assert.equal(r.headers.get('content-type'), 'application/json', value);
      assert.equal(r.headers.get('cache-control'), 'no-store', value);
    }
    assert.equal((await fake.counters()).introspect, before);
  });

  it('a repeated Authorization header -> 400 invalid_request, no introspection', async () => {
    const before = (await fake.counters()).introspect;
    const { port } = new URL(base);
    // raw bytes: clients merge or refuse repeated headers, node:http keeps the first in req.headers
    const raw = await new Promise((resolve, reject) => {
      const socket = net.connect(Number(port), '127.0.0.1', () => socket.end(
        'GET /resource HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-valid\r\n' +
        'Authorization: Bearer tok-bob\r\nConnection: close\r\n\r\n'));
      let text = '';
      socket.on('data', (d) => { text += d; });
      socket.on('error', reject);
      socket.on('end', () => {
        const [head, body] = text.split('\r\n\r\n');
        const lines = head.split('\r\n');
        const headers = {};
        for (const line of lines.slice(1)) {
          const i = line.indexOf(':');
          headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
        }
        resolve({ status: Number(lines[0].split(' ')[1]), headers, body: JSON.parse(body) });
      });
    });
    assert.equal(raw.status, 400);
    assert.equal(raw.body.error.code, 'TC_INVALID_ARGUMENT');
    assert.equal(raw.headers['www-authenticate'], 'Bearer realm="test-api", error="invalid_request"');
    assert.equal((await fake.counters()).introspect, before);
  });

  it('like Go, any visible-ASCII token reaches the library; spaces around it are ignored', async () => {
    for (const value of ['Bearer a,b', 'Bearer "quoted"']) {
      const r = await get(base, { authorization: value });
      assert.equal(r.status, 401, value);
      assert.equal(r.body.error.code, 'TC_INACTIVE_TOKEN', value);
    }
    const spaced = await get(base, { authorization: 'BEARER    tok-valid' });
    assert.equal(spaced.status, 200);
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

  it('token failures -> 401 invalid_token, or 403 insufficient_scope naming the scopes', async () => {
    const cases = [
      ['tok-inactive', 401, 'TC_INACTIVE_TOKEN', 'error="invalid_token"'],
      [h.uniqueToken('unknown'), 401, 'TC_INACTIVE_TOKEN', 'error="invalid_token"'],
      ['tok-expired', 401, 'TC_TOKEN_EXPIRED', 'error="invalid_token"'],
      ['tok-not-yet', 401, 'TC_TOKEN_EXPIRED', 'error="invalid_token"'],
      ['tok-wrong-aud', 401, 'TC_WRONG_AUDIENCE', 'error="invalid_token"'],
      ['tok-wrong-scope', 403, 'TC_INSUFFICIENT_SCOPE', `error="insufficient_scope", scope="${h.SCOPE}"`],
    ];
    for (const [token, status, code, error] of cases) {
      const r = await get(base, bearer(token));
      assert.equal(r.status, status, code);
      assert.equal(r.body.error.code, code);
      assert.equal(r.headers.get('www-authenticate'), `Bearer realm="test-api", ${error}`);
      assert.equal(r.headers.get('content-type'), 'application/json');
    }
  });

  it('insufficient scope names every expected scope, space-separated', async () => {
    const two = new TokenChecker(h.config(fake, { expectedScopes: [h.SCOPE, 'urn:globus:auth:scope:x:y'], scopeMatch: 'all' }));
    const url = await serve(withNext(two.middleware(), []));
    const r = await get(url, bearer('tok-valid'));
    assert.equal(r.status, 403);
    assert.equal(r.headers.get('www-authenticate'),
      `Bearer realm="api", error="insufficient_scope", scope="${h.SCOPE} urn:globus:auth:scope:x:y"`);
    two.close();
  });

  it('a token over maxTokenBytes -> 400 TC_INVALID_ARGUMENT invalid_request, not echoed', async () => {
    const small = new TokenChecker(h.config(fake, { maxTokenBytes: 64 }));
    const url = await serve(withNext(small.middleware(), []));
    const token = `secret${'x'.repeat(200)}`;
    const r = await get(url, bearer(token));
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, 'TC_INVALID_ARGUMENT');
    assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="api", error="invalid_request"');
    assert.ok(!JSON.stringify(r.body).includes('secretxxx'));
    small.close();
  });

  it('auth server unavailable on a fresh token -> 503, Retry-After, no detail', async () => {
    const t = await h.newToken(fake);
    await fake.setFault({ endpoint: 'introspect', status: 503 });
    const r = await get(base, bearer(t));
    assert.equal(r.status, 503);
    assert.equal(r.body.error.code, 'TC_AUTH_UNAVAILABLE');
    assert.equal(r.body.error.message, 'the authorization service is unavailable; try again later');
    assert.equal(r.headers.get('www-authenticate'), null);
    assert.equal(r.headers.get('retry-after'), '5');
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
    assert.equal(no.body.error.message, 'the caller is not allowed to use this resource');
    assert.equal(no.headers.get('www-authenticate'), null);
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

  it('a closed checker answers 503 TC_AUTH_UNAVAILABLE with Retry-After', async () => {
    const c = new TokenChecker(h.config(fake));
    const auth = c.middleware();
    c.close();
    const base = await serve(async (req, res) => {
      if (await auth(req, res)) res.end('no');
    });
    const r = await get(base, bearer('tok-valid'));
    assert.equal(r.status, 503);
    assert.equal(r.body.error.code, 'TC_AUTH_UNAVAILABLE');
    assert.equal(r.headers.get('retry-after'), '5');
  });

  it('onError sees the status and the library error, with its detail', async () => {
    const seen = [];
    const auth = checker.middleware({ onError: (req, status, err) => seen.push([req.url, status, err.code, err.message]) });
    const base = await serve(async (req, res) => {
      if (await auth(req, res)) res.end('ok');
    });
    await get(base);
    await get(base, bearer('tok-expired'));
    await get(base, { authorization: 'Bearer a b' });
    assert.equal((await get(base, bearer('tok-valid'))).status, 200);
    assert.equal(seen.length, 3);
    assert.deepEqual(seen[0].slice(0, 3), ['/resource', 401, 'TC_INVALID_ARGUMENT']);
    assert.match(seen[0][3], /no Authorization header/);
    assert.deepEqual(seen[1].slice(0, 3), ['/resource', 401, 'TC_TOKEN_EXPIRED']);
    assert.deepEqual(seen[2].slice(0, 3), ['/resource', 400, 'TC_INVALID_ARGUMENT']);
    assert.match(seen[2][3], /malformed/);
  });

  it('a throw from onError is rethrown asynchronously; the answer is written anyway', async () => {
    const thrown = new Error('onError failed');
    const auth = checker.middleware({ onError: () => { throw thrown; } });
    const base = await serve(async (req, res) => {
      if (await auth(req, res)) res.end('ok');
    });
    const listeners = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    const caught = [];
    process.on('uncaughtException', (e) => caught.push(e));
    try {
      const r = await get(base, bearer('tok-inactive'));
      assert.equal(r.status, 401);
      assert.equal(r.body.error.code, 'TC_INACTIVE_TOKEN');
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.removeAllListeners('uncaughtException');
      for (const l of listeners) process.on('uncaughtException', l);
    }
    assert.deepEqual(caught, [thrown]);
  });
});

describe('middleware options', () => {
  it('rejects unknown options and bad principals at creation', () => {
    assert.throws(() => checker.middleware({ allowed: ['x'] }), TokenCheckerError);
    assert.throws(() => checker.middleware({ allowedPrincipals: 'public' }), { code: 'TC_INVALID_ARGUMENT' });
    assert.throws(() => checker.middleware({ allowedPrincipals: [], allowPublic: 'yes' }), { code: 'TC_INVALID_ARGUMENT' });
    assert.throws(() => checker.middleware({ onError: 'log' }), { code: 'TC_INVALID_ARGUMENT' });
    assert.equal(typeof checker.middleware(), 'function');
    assert.equal(checker.middleware().length, 3);
  });
});

describe('bearerToken', () => {
  const req = (authorization) => ({ headers: authorization === undefined ? {} : { authorization } });
  const invalid = (r, message, noBearerToken) => assert.throws(() => bearerToken(r), (err) => {
    assert.ok(err instanceof TokenCheckerError);
    assert.equal(err.code, 'TC_INVALID_ARGUMENT');
    assert.equal(err.status, 1);
    assert.match(err.message, message);
    assert.equal(err.noBearerToken === true, noBearerToken, JSON.stringify(r));
    return true;
  });

  it('returns the token of one Bearer header (scheme case-insensitive, spaces around ignored)', () => {
    assert.equal(bearerToken(req('Bearer tok-valid')), 'tok-valid');
    assert.equal(bearerToken(req('bEaReR tok-valid')), 'tok-valid');
    assert.equal(bearerToken(req('Bearer   tok-valid \t')), 'tok-valid');
    assert.equal(bearerToken(req('Bearer a,b"c=')), 'a,b"c=');
    assert.equal(bearerToken({ headers: { authorization: ['Bearer x'] } }), 'x');
    assert.equal(bearerToken({ rawHeaders: ['Host', 'h', 'AUTHORIZATION', 'Bearer y'] }), 'y');
  });

  it('throws TC_INVALID_ARGUMENT with noBearerToken: missing, another scheme, empty', () => {
    const none = (r, message) => invalid(r, message, true);
    none(req(undefined), /no Authorization header/);
    none({}, /no Authorization header/);
    none({ rawHeaders: ['Host', 'h'] }, /no Authorization header/);
    for (const value of ['', 'Basic dGVzdDp0ZXN0', 'Bearertok', 'Token tok', 'Token\ttok', 'Bearer,x']) {
      none(req(value), /scheme is not Bearer/);
    }
  });

  it('throws TC_INVALID_ARGUMENT without noBearerToken: repeated, no token, tab after the scheme, not one visible-ASCII token', () => {
    for (const value of ['Bearer', 'Bearer ', 'Bearer \t ', 'bearer\t', 'Bearer\ttok', 'Bearer a b', 'Bearer a\tb',
      'Bearer a\u00e9', 'Bearer a\u0000', 'Bearer a\u007f']) {
      invalid(req(value), /malformed/, false);
    }
    invalid({ headers: { authorization: ['Bearer x', 'Bearer y'] } }, /repeated/, false);
    invalid({ rawHeaders: ['Authorization', 'Bearer x', 'authorization', 'Bearer x'] }, /repeated/, false);
    invalid({ rawHeaders: ['Authorization', 'Basic x', 'authorization', 'Bearer x'] }, /repeated/, false);
  });
});

describe('writeError', () => {
  /** A minimal ServerResponse stand-in recording what is written. */
  function recorder() {
    return {
      headers: {}, statusCode: 200, body: null, headersSent: false, writableEnded: false,
      setHeader(k, v) { this.headers[k.toLowerCase()] = String(v); },
      end(b) { this.body = b; this.headersSent = true; this.writableEnded = true; },
    };
  }
  const err = (code) => new TokenCheckerError(code, `detail of ${code} (internal)`, 0);

  it('answers every code with its status, headers and fixed message (never the detail)', () => {
    const cases = [
      ['TC_INVALID_ARGUMENT', 400, 'Bearer realm="api", error="invalid_request"', null],
      ['TC_INACTIVE_TOKEN', 401, 'Bearer realm="api", error="invalid_token"', null],
      ['TC_TOKEN_EXPIRED', 401, 'Bearer realm="api", error="invalid_token"', null],
      ['TC_WRONG_AUDIENCE', 401, 'Bearer realm="api", error="invalid_token"', null],
      ['TC_INSUFFICIENT_SCOPE', 403, 'Bearer realm="api", error="insufficient_scope"', null],
      ['TC_NOT_AUTHORIZED', 403, undefined, null],
      ['TC_AUTH_UNAVAILABLE', 503, undefined, '5'],
      ['TC_CREDENTIALS_REJECTED', 503, undefined, '5'],
      ['TC_PANIC', 500, undefined, null],
    ];
    for (const [code, status, www, retry] of cases) {
      const res = recorder();
      assert.equal(writeError(res, err(code)), status, code);
      assert.equal(res.statusCode, status, code);
      assert.equal(res.headers['www-authenticate'], www, code);
      assert.equal(res.headers['retry-after'], retry ?? undefined, code);
      assert.equal(res.headers['content-type'], 'application/json');
      assert.equal(res.headers['cache-control'], 'no-store');
      const body = JSON.parse(res.body);
      assert.deepEqual(Object.keys(body), ['error']);
      assert.deepEqual(Object.keys(body.error), ['code', 'message']);
      assert.equal(body.error.code, code);
      assert.ok(!body.error.message.includes('detail'), code);
      assert.equal(res.headers['content-length'], String(Buffer.byteLength(res.body)));
    }
  });

  it('bearerToken\'s error for no bearer credentials answers 401 with a bare challenge', () => {
    let thrown;
    try { bearerToken({ headers: { authorization: 'Basic x' } }); } catch (e) { thrown = e; }
    const res = recorder();
    assert.equal(writeError(res, thrown, { realm: 'r', scopes: ['a'] }), 401);
    assert.equal(res.headers['www-authenticate'], 'Bearer realm="r"');
    assert.equal(res.headers['retry-after'], undefined);
    assert.deepEqual(JSON.parse(res.body), { error: { code: 'TC_INVALID_ARGUMENT', message: 'the request has no bearer token' } });
  });

  it('TC_CLOSED answers as TC_AUTH_UNAVAILABLE; other codes 500 (as Go); non-library errors 500 TC_PANIC', () => {
    let res = recorder();
    assert.equal(writeError(res, err('TC_CLOSED')), 503);
    assert.equal(JSON.parse(res.body).error.code, 'TC_AUTH_UNAVAILABLE');
    assert.equal(res.headers['retry-after'], '5');
    for (const code of ['TC_INVALID_CONFIG', 'TC_WOULD_BLOCK']) {
      res = recorder();
      assert.equal(writeError(res, err(code)), 500);
      assert.deepEqual(JSON.parse(res.body), { error: { code, message: 'internal error' } });
    }
    for (const other of [new Error('boom'), 'text', null, undefined, { code: 'ECONNRESET' }]) {
      res = recorder();
      assert.equal(writeError(res, other), 500);
      assert.deepEqual(JSON.parse(res.body), { error: { code: 'TC_PANIC', message: 'internal error' } });
    }
  });

  it('removes a WWW-Authenticate or Retry-After set earlier when its answer has none', () => {
    const res = recorder();
    res.removeHeader = function removeHeader(k) { delete this.headers[k.toLowerCase()]; };
    res.setHeader('WWW-Authenticate', 'Basic');
    res.setHeader('Retry-After', '60');
    writeError(res, err('TC_NOT_AUTHORIZED'));
    assert.equal(res.headers['www-authenticate'], undefined);
    assert.equal(res.headers['retry-after'], undefined);
  });

  it('realm and scopes options; nothing written after the headers were sent', () => {
    let res = recorder();
    writeError(res, err('TC_INSUFFICIENT_SCOPE'), { realm: 'my "api"', scopes: ['a', 'b'] });
    assert.equal(res.headers['www-authenticate'], 'Bearer realm="my \\"api\\"", error="insufficient_scope", scope="a b"');
    res = recorder();
    writeError(res, err('TC_INACTIVE_TOKEN'), { realm: 'a\r\nb\\' });
    assert.equal(res.headers['www-authenticate'], 'Bearer realm="a  b\\\\", error="invalid_token"');
    res = recorder();
    writeError(res, err('TC_INSUFFICIENT_SCOPE'), { scopes: 'a  b' });
    assert.equal(res.headers['www-authenticate'], 'Bearer realm="api", error="insufficient_scope", scope="a b"');
    res = recorder();
    writeError(res, err('TC_INACTIVE_TOKEN'), { realm: 'r', scopes: checker.expectedScopes });
    assert.equal(res.headers['www-authenticate'], 'Bearer realm="r", error="invalid_token"');
    assert.throws(() => writeError(recorder(), err('TC_PANIC'), { scope: 'a' }), { code: 'TC_INVALID_ARGUMENT' });
    res = recorder();
    res.headersSent = true;
    assert.equal(writeError(res, err('TC_INACTIVE_TOKEN')), 401);
    assert.equal(res.body, null);
    assert.deepEqual(res.headers, {});
  });

  it('checker.expectedScopes: frozen, from a list or a space-separated string (object or JSON config)', async () => {
    assert.deepEqual(checker.expectedScopes, [h.SCOPE]);
    assert.ok(Object.isFrozen(checker.expectedScopes));
    const a = new TokenChecker(h.config(fake, { expectedScopes: `${h.SCOPE}  other`, verifyCredentials: false }));
    assert.deepEqual(a.expectedScopes, [h.SCOPE, 'other']);
    a.close();
    const b = await TokenChecker.create(JSON.stringify({ client_id: 'test-client', client_secret: 'test-secret',
      expected_scopes: [h.SCOPE, 'x'], auth_url: fake.url, groups_url: fake.url, verify_credentials: false }));
    assert.deepEqual(b.expectedScopes, [h.SCOPE, 'x']);
    b.close();
  });
});
