'use strict';
// Every method and every reachable error code, against the real fake Globus server.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');

const tc = require('..');
const { TokenChecker, TokenCheckerError, Status } = tc;
const h = require('./helpers');

let fake;
let checker;

before(async () => {
  fake = await h.startFake();
  checker = new TokenChecker(h.config(fake, { maxRetries: 0 }));
});

after(async () => {
  if (checker) checker.close();
  if (fake) await fake.stop();
});

async function rejectsWith(promise, code) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof TokenCheckerError, `expected a TokenCheckerError, got ${err}`);
    assert.ok(err instanceof Error);
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    assert.equal(err.status, Status[code]);
    assert.equal(typeof err.message, 'string');
    assert.ok(err.message.length > 0);
    return true;
  });
}

function throwsWith(fn, code) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof TokenCheckerError, `expected a TokenCheckerError, got ${err}`);
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    assert.equal(err.status, Status[code]);
    return true;
  });
}

describe('module', () => {
  it('version() and TokenChecker.version()', () => {
    assert.match(tc.version(), /^\d+\.\d+\.\d+$/);
    assert.equal(TokenChecker.version(), tc.version());
  });

  it('stats() is the library document and counts checks', async () => {
    const before = tc.stats();
    for (const key of ['checks', 'hits', 'misses', 'negative_hits', 'purges', 'requests', 'errors', 'cache']) {
      assert.ok(key in before, `stats lacks ${key}`);
    }
    await checker.check(await h.newToken(fake));
    const afterStats = TokenChecker.stats();
    assert.ok(afterStats.checks > before.checks);
    assert.ok(afterStats.requests.introspect > before.requests.introspect);
  });

  it('Status holds every C status and TC_CLOSED', () => {
    for (let i = 0; i <= 11; i++) {
      assert.equal(Status[tc._native.statusName(i)], i);
    }
    assert.equal(Status.TC_CLOSED, -1);
  });
});

describe('configuration', () => {
  it('maps camelCase options to the library keys', () => {
    const json = tc._configToJson({
      clientId: 'c', clientSecret: 's', expectedScopes: ['a'], expectedAudience: 'aud',
      authUrl: 'http://a', groupsUrl: 'http://g', scopeMatch: 'all', leewayS: 5,
      fetchGroups: 'eager', verifyCredentials: false, connectTimeoutMs: 1, requestTimeoutMs: 2,
      maxRetries: 3, maxTokenBytes: 100, maxResponseBytes: 2048,
      cacheConfig: { backend: 'memory', timeout: 10, max_entries: 5, nearCacheTtl: 1 },
      ignored: undefined,
    });
    assert.deepEqual(JSON.parse(json), {
      client_id: 'c', client_secret: 's', expected_scopes: ['a'], expected_audience: 'aud',
      auth_url: 'http://a', groups_url: 'http://g', scope_match: 'all', leeway_s: 5,
      fetch_groups: 'eager', verify_credentials: false, connect_timeout_ms: 1, request_timeout_ms: 2,
      max_retries: 3, max_token_bytes: 100, max_response_bytes: 2048,
      cache_config: { backend: 'memory', timeout: 10, max_entries: 5, near_cache_ttl: 1 },
    });
  });

  it('accepts a raw JSON string verbatim', async () => {
    const c = new TokenChecker(JSON.stringify({
      client_id: 'test-client', client_secret: 'test-secret', expected_scopes: [h.SCOPE],
      auth_url: fake.url, groups_url: fake.url,
    }));
    const s = await c.check('tok-valid');
    assert.equal(s.sub, h.ALICE_ID);
    c.close();
  });

  it('unknown key -> TC_INVALID_CONFIG naming the key', () => {
    assert.throws(() => new TokenChecker(h.config(fake, { bogusOption: 1 })), (err) => {
      assert.equal(err.code, 'TC_INVALID_CONFIG');
      assert.equal(err.status, 2);
      assert.match(err.message, /bogus_option/);
      return true;
    });
  });

  it('bad values and types -> TC_INVALID_CONFIG', () => {
    throwsWith(() => new TokenChecker(h.config(fake, { scopeMatch: 'some' })), 'TC_INVALID_CONFIG');
    throwsWith(() => new TokenChecker('{not json'), 'TC_INVALID_CONFIG');
    throwsWith(() => new TokenChecker(42), 'TC_INVALID_CONFIG');
    throwsWith(() => new TokenChecker(null), 'TC_INVALID_CONFIG');
    throwsWith(() => new TokenChecker('{"client_id":"a\u0000"}'), 'TC_INVALID_CONFIG');
    throwsWith(() => new TokenChecker({ clientId: 'test-client' }), 'TC_INVALID_CONFIG');
  });

  it('rejected client credentials -> TC_CREDENTIALS_REJECTED (constructor and create)', async () => {
    throwsWith(() => new TokenChecker(h.config(fake, { clientSecret: 'wrong' })), 'TC_CREDENTIALS_REJECTED');
    await rejectsWith(TokenChecker.create(h.config(fake, { clientSecret: 'wrong' })), 'TC_CREDENTIALS_REJECTED');
    await rejectsWith(TokenChecker.create({ nope: true }), 'TC_INVALID_CONFIG');
  });

  it('TokenChecker.create resolves to a working checker', async () => {
    const c = await TokenChecker.create(h.config(fake));
    assert.ok(c instanceof TokenChecker);
    assert.equal((await c.check('tok-valid')).username, 'alice@example.org');
    c.close();
  });

  it('with cacheConfig the process-wide cache is rebuilt', async () => {
    const t = await h.newToken(fake);
    await checker.check(t);
    assert.equal((await checker.check(t)).cache.source, 'memory');
    const resets = tc.stats().cache_resets;
    const c = new TokenChecker(h.config(fake, { cacheConfig: { backend: 'memory', timeout: 60, maxEntries: 1000 } }));
    assert.equal(tc.stats().cache_resets, resets + 1);
    assert.equal(tc.stats().cache.timeout_s, 60);
    assert.equal((await checker.check(t)).cache.source, 'network');
    c.close();
  });
});

describe('check', () => {
  it('returns the typed AuthState for tok-valid', async () => {
    const s = await checker.check('tok-valid');
    assert.equal(s.active, true);
    assert.equal(s.sub, h.ALICE_ID);
    assert.equal(s.effectiveIdentity, h.IDENTITY(h.ALICE_ID));
    assert.deepEqual(s.identities, [h.ALICE_ID, h.ALICE_ID2]);
    assert.equal(s.username, 'alice@example.org');
    assert.equal(s.name, 'Alice');
    assert.equal(s.email, 'alice@example.org');
    assert.equal(s.clientId, 'test-client');
    assert.ok(s.scopes.includes(h.SCOPE));
    assert.deepEqual(s.aud, ['test-client']);
    for (const k of ['exp', 'nbf', 'iat']) assert.equal(typeof s[k], 'number');
    assert.ok(s.exp > Date.now() / 1000);
    assert.equal(s.groups, null);
    assert.equal(s.groupsStatus, 'not_fetched');
    assert.equal(s.groupsError, null);
    assert.deepEqual(s.principals, [h.IDENTITY(h.ALICE_ID), h.IDENTITY(h.ALICE_ID2)]);
    assert.ok(['network', 'memory', 'coalesced'].includes(s.cache.source));
    assert.equal(typeof s.cache.ageMs, 'number');
    assert.equal(s.authorization, undefined);
  });

  it('fast path: a cached answer settles without a trip to the event loop', async () => {
    const t = await h.newToken(fake);
    const first = await checker.check(t);
    assert.equal(first.cache.source, 'network');
    const before = await fake.counters();
    const p = checker.check(t);
    assert.ok(p instanceof Promise);
    let state;
    p.then((s) => { state = s; });
    await null; // one microtask turn, no macrotask
    await null;
    assert.ok(state, 'the promise should already be settled');
    assert.equal(state.cache.source, 'memory');
    assert.equal(tc.inFlight(), 0);
    assert.deepEqual((await fake.counters()).introspect, before.introspect);
  });

  it('rejects with the library code for each token failure', async () => {
    await rejectsWith(checker.check('tok-inactive'), 'TC_INACTIVE_TOKEN');
    // Active without an identity set: valid, with no identities (not "inactive").
    assert.deepEqual((await checker.check('tok-no-identities')).identities, []);
    await rejectsWith(checker.check('tok-wrong-scope'), 'TC_INSUFFICIENT_SCOPE');
    await rejectsWith(checker.check('tok-wrong-aud'), 'TC_WRONG_AUDIENCE');
    await rejectsWith(checker.check('tok-expired'), 'TC_TOKEN_EXPIRED');
    await rejectsWith(checker.check('tok-not-yet'), 'TC_TOKEN_EXPIRED');
    await rejectsWith(checker.check(h.uniqueToken('unknown')), 'TC_INACTIVE_TOKEN');
  });

  it('a cached negative answer also rejects (fast path)', async () => {
    const t = await h.newToken(fake, { active: false });
    await rejectsWith(checker.check(t), 'TC_INACTIVE_TOKEN');
    const before = (await fake.counters()).introspect;
    await rejectsWith(checker.check(t), 'TC_INACTIVE_TOKEN');
    assert.equal((await fake.counters()).introspect, before);
  });

  it('invalid tokens -> TC_INVALID_ARGUMENT', async () => {
    await rejectsWith(checker.check(''), 'TC_INVALID_ARGUMENT');
    await rejectsWith(checker.check('a\u0000b'), 'TC_INVALID_ARGUMENT');
    await rejectsWith(checker.check(42), 'TC_INVALID_ARGUMENT');
    await rejectsWith(checker.check(undefined), 'TC_INVALID_ARGUMENT');
    const small = new TokenChecker(h.config(fake, { maxTokenBytes: 16 }));
    await rejectsWith(small.check('x'.repeat(64)), 'TC_INVALID_ARGUMENT');
    small.close();
  });

  it('checker rules: scopeMatch all, expectedAudience', async () => {
    const all = new TokenChecker(h.config(fake, {
      expectedScopes: [h.SCOPE, 'urn:globus:auth:scope:other:all'], scopeMatch: 'all',
    }));
    await rejectsWith(all.check('tok-valid'), 'TC_INSUFFICIENT_SCOPE');
    all.close();
    const aud = new TokenChecker(h.config(fake, { expectedAudience: 'other-client' }));
    assert.deepEqual((await aud.check('tok-wrong-aud')).aud, ['other-client']);
    await rejectsWith(aud.check('tok-valid'), 'TC_WRONG_AUDIENCE');
    aud.close();
  });

  it('server rejects credentials on a check -> TC_CREDENTIALS_REJECTED', async () => {
    const bad = new TokenChecker(h.config(fake, { clientSecret: 'wrong', verifyCredentials: false }));
    await rejectsWith(bad.check(await h.newToken(fake)), 'TC_CREDENTIALS_REJECTED');
    bad.close();
  });

  it('server errors and timeouts -> TC_AUTH_UNAVAILABLE', async () => {
    const t = await h.newToken(fake);
    await fake.setFault({ endpoint: 'introspect', status: 503, body: '{"error":"busy"}', count: 3 });
    try {
      await rejectsWith(checker.check(t), 'TC_AUTH_UNAVAILABLE');
    } finally {
      await fake.clearFaults();
    }
    assert.equal((await checker.check(t)).cache.source, 'network'); // not cached as a failure

    const quick = new TokenChecker(h.config(fake, { requestTimeoutMs: 300, maxRetries: 0 }));
    await fake.setFault({ endpoint: 'introspect', mode: 'hang' });
    try {
      const started = Date.now();
      await rejectsWith(quick.check(await h.newToken(fake)), 'TC_AUTH_UNAVAILABLE');
      assert.ok(Date.now() - started < 5000);
      await fake.setFault({ endpoint: 'introspect', mode: 'garbage' });
      await rejectsWith(quick.check(await h.newToken(fake)), 'TC_AUTH_UNAVAILABLE');
    } finally {
      await fake.clearFaults();
      quick.close();
    }
  });

  it('fetchGroups eager: groups available, or unavailable with groupsError', async () => {
    const eager = new TokenChecker(h.config(fake, { fetchGroups: 'eager', maxRetries: 0 }));
    const s = await eager.check('tok-valid');
    assert.equal(s.groupsStatus, 'available');
    assert.deepEqual([...s.groups].sort(), [h.GROUP_ADMIN, h.GROUP_MEMBER].sort()); // pending excluded
    assert.ok(s.principals.includes(h.GROUP(h.GROUP_ADMIN)));
    assert.ok(!s.principals.includes(h.GROUP(h.GROUP_PENDING)));
    const t = await h.newToken(fake, { groups: [h.GROUP_MEMBER] });
    await fake.setFault({ endpoint: 'groups', status: 500 });
    try {
      const u = await eager.check(t);
      assert.equal(u.groupsStatus, 'unavailable');
      assert.equal(u.groups, null);
      assert.equal(typeof u.groupsError, 'string');
    } finally {
      await fake.clearFaults();
      eager.close();
    }
  });
});

describe('authorize', () => {
  it('matches an identity principal', async () => {
    const s = await checker.authorize('tok-valid', [h.IDENTITY(h.ALICE_ID2)]);
    assert.deepEqual(s.authorization, { authorized: true, matched: h.IDENTITY(h.ALICE_ID2) });
    assert.equal(s.sub, h.ALICE_ID);
  });

  it('matches a group principal (fetching groups), never a pending membership', async () => {
    const s = await checker.authorize('tok-valid', [h.GROUP(h.GROUP_ADMIN)]);
    assert.equal(s.authorization.matched, h.GROUP(h.GROUP_ADMIN));
    // the answer path: the match is the authorization's; groups are listed with fetchGroups 'eager'
    assert.equal(s.groups, null);
    assert.equal(s.groupsStatus, 'not_fetched');
    await rejectsWith(checker.authorize('tok-valid', [h.GROUP(h.GROUP_PENDING)]), 'TC_NOT_AUTHORIZED');
    await rejectsWith(checker.authorize('tok-bob', [h.GROUP(h.GROUP_MEMBER)]), 'TC_NOT_AUTHORIZED');
  });

  it('public and all_authenticated_users need their options', async () => {
    assert.equal((await checker.authorize('tok-bob', ['public'], { allowPublic: true })).authorization.matched, 'public');
    await rejectsWith(checker.authorize('tok-bob', ['public']), 'TC_NOT_AUTHORIZED');
    const s = await checker.authorize('tok-bob', new Set(['all_authenticated_users']), { allowAllAuthenticatedUsers: true });
    assert.equal(s.authorization.matched, 'all_authenticated_users');
    await rejectsWith(checker.authorize('tok-bob', ['all_authenticated_users']), 'TC_NOT_AUTHORIZED');
    await rejectsWith(checker.authorize('tok-bob', []), 'TC_NOT_AUTHORIZED');
  });

  it('token failures come first', async () => {
    await rejectsWith(checker.authorize('tok-inactive', ['public'], { allowPublic: true }), 'TC_INACTIVE_TOKEN');
    await rejectsWith(checker.authorize('tok-expired', [h.IDENTITY(h.ALICE_ID)]), 'TC_TOKEN_EXPIRED');
  });

  it('invalid requests -> TC_INVALID_ARGUMENT', async () => {
    await rejectsWith(checker.authorize('tok-valid', 'public'), 'TC_INVALID_ARGUMENT');
    await rejectsWith(checker.authorize('tok-valid'), 'TC_INVALID_ARGUMENT');
    await rejectsWith(checker.authorize('tok-valid', [5]), 'TC_INVALID_ARGUMENT');
    await rejectsWith(checker.authorize('tok-valid', ['public'], { allow_public: true }), 'TC_INVALID_ARGUMENT');
    await rejectsWith(checker.authorize('tok-valid', ['public'], { allowPublic: 'yes' }), 'TC_INVALID_ARGUMENT');
    await rejectsWith(checker.authorize('', ['public']), 'TC_INVALID_ARGUMENT');
  });

  it('groups unavailable when only groups could decide -> TC_AUTH_UNAVAILABLE', async () => {
    const t = await h.newToken(fake, { groups: [h.GROUP_MEMBER] });
    await fake.setFault({ endpoint: 'groups', status: 500 });
    try {
      await rejectsWith(checker.authorize(t, [h.GROUP(h.GROUP_MEMBER)]), 'TC_AUTH_UNAVAILABLE');
    } finally {
      await fake.clearFaults();
    }
  });
});

describe('dependentToken', () => {
  it('by scope and by resource server; cached', async () => {
    const t = await h.newToken(fake, {
      dependent_tokens: [{ scope: h.TRANSFER_SCOPE, resource_server: 'transfer.api.globus.org' }],
    });
    const d = await checker.dependentToken(t, h.TRANSFER_SCOPE);
    assert.match(d.accessToken, /^dep-/);
    assert.equal(d.scope, h.TRANSFER_SCOPE);
    assert.equal(d.resourceServer, 'transfer.api.globus.org');
    assert.equal(d.tokenType.toLowerCase(), 'bearer');
    assert.equal(typeof d.expiresAt, 'number');
    assert.ok(d.expiresIn > 0 && d.expiresIn <= 172800);
    const grants = (await fake.counters()).dependent_token;
    const again = await checker.dependentToken(t, 'transfer.api.globus.org');
    assert.equal(again.accessToken, d.accessToken);
    assert.equal((await fake.counters()).dependent_token, grants);
  });

  it('errors', async () => {
    await rejectsWith(checker.dependentToken('tok-valid', 'urn:globus:auth:scope:nothing:here'), 'TC_NOT_AUTHORIZED');
    await rejectsWith(checker.dependentToken('tok-inactive', h.TRANSFER_SCOPE), 'TC_INACTIVE_TOKEN');
    await rejectsWith(checker.dependentToken('tok-valid', 7), 'TC_INVALID_ARGUMENT');
    const t = await h.newToken(fake, { dependent_tokens: [{ scope: h.TRANSFER_SCOPE, resource_server: 'transfer.api.globus.org' }] });
    await checker.check(t);
    await fake.setFault({ endpoint: 'dependent_token', status: 502 });
    try {
      await rejectsWith(checker.dependentToken(t, h.TRANSFER_SCOPE), 'TC_AUTH_UNAVAILABLE');
    } finally {
      await fake.clearFaults();
    }
  });
});

describe('purge', () => {
  it('purge(token) forgets the token', async () => {
    const t = await h.newToken(fake);
    assert.equal((await checker.check(t)).cache.source, 'network');
    assert.equal((await checker.check(t)).cache.source, 'memory');
    const result = await checker.purge(t);
    assert.equal(result, undefined);
    const before = (await fake.counters()).introspect;
    assert.equal((await checker.check(t)).cache.source, 'network');
    assert.equal((await fake.counters()).introspect, before + 1);
    await checker.purge(h.uniqueToken('never-seen')); // need not be valid
  });

  it('purgeIdentity(id or principal) forgets the identity\'s tokens', async () => {
    const id = require('crypto').randomUUID();
    const t1 = await h.newToken(fake, { identity_set: [id] });
    const t2 = await h.newToken(fake, { identity_set: [id] });
    await checker.check(t1);
    await checker.check(t2);
    assert.equal((await checker.check(t1)).cache.source, 'memory');
    await checker.purgeIdentity(id);
    assert.equal((await checker.check(t1)).cache.source, 'network');
    assert.equal((await checker.check(t2)).cache.source, 'network');
    await checker.purgeIdentity(h.IDENTITY(id));
    assert.equal((await checker.check(t1)).cache.source, 'network');
  });

  it('invalid input -> TC_INVALID_ARGUMENT', async () => {
    await rejectsWith(checker.purge(''), 'TC_INVALID_ARGUMENT');
    await rejectsWith(checker.purge(1), 'TC_INVALID_ARGUMENT');
    await rejectsWith(checker.purgeIdentity(''), 'TC_INVALID_ARGUMENT');
    await rejectsWith(checker.purgeIdentity(null), 'TC_INVALID_ARGUMENT');
  });
});

describe('close', () => {
  it('is idempotent; later calls reject with TC_CLOSED', async () => {
    const c = new TokenChecker(h.config(fake));
    await c.check('tok-valid');
    assert.equal(c.closed, false);
    c.close();
    c.close();
    assert.equal(c.closed, true);
    await rejectsWith(c.check('tok-valid'), 'TC_CLOSED');
    await rejectsWith(c.authorize('tok-valid', ['public'], { allowPublic: true }), 'TC_CLOSED');
    await rejectsWith(c.dependentToken('tok-valid', h.TRANSFER_SCOPE), 'TC_CLOSED');
    await rejectsWith(c.purge('tok-valid'), 'TC_CLOSED');
    await rejectsWith(c.purgeIdentity(h.ALICE_ID), 'TC_CLOSED');
    assert.equal(c.inFlight, 0);
    // other checkers are unaffected
    assert.equal((await checker.check('tok-valid')).sub, h.ALICE_ID);
  });

  it('the native layer refuses a closed handle too', () => {
    const answer = tc._native.create(tc._configToJson(h.config(fake, { verifyCredentials: false })));
    assert.equal(answer[0], 0);
    tc._native.close(answer[1]);
    tc._native.close(answer[1]);
    assert.equal(tc._native.isFreed(answer[1]), true);
    const r = tc._native.check(answer[1], 'tok-valid', () => assert.fail('must not be called'));
    assert.equal(JSON.parse(r[1]).error.code, 'TC_CLOSED');
    assert.throws(() => tc._native.check({}, 'tok-valid', () => {}), TypeError);
  });
});
