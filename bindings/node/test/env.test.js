'use strict';
// TokenChecker.fromEnv: the CLI's variables, explicit options winning, against the fake.
const { describe, it, before, after, beforeEach, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const tc = require('..');
const { TokenChecker, TokenCheckerError, Status } = tc;
const h = require('./helpers');

const NAMES = ['TC_CLIENT_ID', 'TC_CLIENT_SECRET', 'TC_SCOPES', 'TC_AUTH_URL', 'TC_GROUPS_URL'];

let fake;
let saved;
const checkers = [];

before(async () => {
  fake = await h.startFake();
});

after(async () => {
  if (fake) await fake.stop();
});

beforeEach(() => {
  saved = Object.fromEntries(NAMES.map((n) => [n, process.env[n]]));
});

afterEach(() => {
  for (const c of checkers.splice(0)) c.close();
  for (const n of NAMES) {
    if (saved[n] === undefined) delete process.env[n];
    else process.env[n] = saved[n];
  }
});

/** Makes the TC_ variables exactly `vars` (the others unset). */
function setEnv(vars = {}) {
  for (const n of NAMES) {
    if (n in vars) process.env[n] = vars[n];
    else delete process.env[n];
  }
}

function fakeEnv(extra = {}) {
  return {
    TC_CLIENT_ID: 'test-client',
    TC_CLIENT_SECRET: 'test-secret',
    TC_SCOPES: ` ${h.SCOPE}  ${h.TRANSFER_SCOPE} `,
    TC_AUTH_URL: fake.url,
    TC_GROUPS_URL: fake.url,
    ...extra,
  };
}

function fromEnv(options) {
  const c = TokenChecker.fromEnv(options);
  checkers.push(c);
  return c;
}

function throwsInvalidConfig(fn, named, notNamed = []) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof TokenCheckerError, `expected a TokenCheckerError, got ${err}`);
    assert.equal(err.code, 'TC_INVALID_CONFIG', err.message);
    assert.equal(err.status, Status.TC_INVALID_CONFIG);
    for (const n of named) assert.ok(err.message.includes(n), `the error does not name ${n}: ${err.message}`);
    for (const n of notNamed) assert.ok(!err.message.includes(n), `the error names ${n}: ${err.message}`);
    return true;
  });
}

describe('TokenChecker.fromEnv', () => {
  it('takes everything from the environment (TC_SCOPES split on spaces)', async () => {
    setEnv(fakeEnv());
    // verifyCredentials is left at its default: creation introspects with the environment's credentials.
    const c = fromEnv();
    assert.deepEqual([...c.expectedScopes], [h.SCOPE, h.TRANSFER_SCOPE]);
    const s = await c.check('tok-valid');
    assert.equal(s.username, 'alice@example.org');
  });

  it('explicit options win over the environment (camelCase and snake_case)', async () => {
    setEnv(fakeEnv({
      TC_CLIENT_SECRET: 'wrong-secret-from-env',
      TC_SCOPES: 'urn:globus:auth:scope:from-env:all',
      TC_AUTH_URL: 'http://127.0.0.1:1', // nothing listens there
    }));
    const c = fromEnv({ clientSecret: 'test-secret', expected_scopes: [h.SCOPE], authURL: fake.url });
    assert.deepEqual([...c.expectedScopes], [h.SCOPE]);
    // A token no other test has checked (so not cached): introspected at the explicit authURL.
    await c.check(await h.newToken(fake));

    // And the other way round: a wrong explicit secret beats the right one in the environment.
    setEnv(fakeEnv());
    assert.throws(() => fromEnv({ client_secret: 'wrong-explicit-secret' }), (err) => {
      assert.equal(err.code, 'TC_CREDENTIALS_REJECTED', err.message);
      assert.ok(!err.message.includes('wrong-explicit-secret'));
      return true;
    });
    // undefined means "not given": the environment's value applies.
    await fromEnv({ clientSecret: undefined }).check(await h.newToken(fake));
  });

  it('ignores an empty variable', async () => {
    setEnv(fakeEnv({ TC_CLIENT_ID: '' }));
    throwsInvalidConfig(() => fromEnv(), ['TC_CLIENT_ID'], ['TC_CLIENT_SECRET', 'TC_SCOPES']);
    // An empty variable does not hide an explicit option either.
    await fromEnv({ clientId: 'test-client' }).check('tok-valid');
    // Empty URLs are not passed on: the defaults apply (no request made: no credential probe).
    setEnv(fakeEnv({ TC_AUTH_URL: '', TC_GROUPS_URL: '' }));
    fromEnv({ verifyCredentials: false });
  });

  it('names the missing variables in a TC_INVALID_CONFIG error', () => {
    setEnv({});
    throwsInvalidConfig(() => fromEnv(), ['TC_CLIENT_ID', 'TC_CLIENT_SECRET', 'TC_SCOPES']);
    setEnv({ TC_CLIENT_ID: 'test-client', TC_SCOPES: h.SCOPE });
    throwsInvalidConfig(() => fromEnv({}), ['TC_CLIENT_SECRET', 'clientSecret'], ['TC_CLIENT_ID', 'TC_SCOPES']);
    // null is an explicit value (as None is in Python): it wins, and is missing.
    setEnv(fakeEnv());
    throwsInvalidConfig(() => fromEnv({ clientId: null }), ['TC_CLIENT_ID'], ['TC_CLIENT_SECRET', 'TC_SCOPES']);
    throwsInvalidConfig(() => TokenChecker.fromEnv('{}'), ['fromEnv options']);
  });
});

describe('the documented list', () => {
  const fs = require('fs');
  const path = require('path');
  const HEADER = '| variable | configuration |';
  /** The markdown table under HEADER, as text. */
  const envTable = (file) => {
    const text = fs.readFileSync(file, 'utf8');
    const start = text.indexOf(`${HEADER}\n`);
    assert.ok(start >= 0, `${file} has no ${HEADER} table`);
    const lines = [];
    for (const line of text.slice(start).split('\n')) {
      if (!line.startsWith('|')) break;
      lines.push(line);
    }
    return lines;
  };

  it("the README's table is Python's, and names the variables fromEnv reads", () => {
    const ours = envTable(path.join(__dirname, '..', 'README.md'));
    assert.deepEqual(ours, envTable(path.join(__dirname, '..', '..', 'python', 'README.md')));
    const rows = ours.slice(2).map((line) => [...line.matchAll(/`([^`]+)`/g)].map((m) => m[1]));
    assert.deepEqual(rows, tc._envKeys.map(([name, key]) => [name, key]));
  });
});
