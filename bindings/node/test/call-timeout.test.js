'use strict';
// callTimeoutMs (the library's call_timeout_ms) bounds each call end to end. The fake answers
// after 5 s, which the request timeout (10 s) would wait for, and the call would then succeed;
// with a 300 ms call timeout each call rejects with TC_AUTH_UNAVAILABLE after at least 300 ms
// and long before 5 s. (Its own fake server: the slow requests it leaves behind bother no other
// test file.)
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');

const tc = require('..');
const { TokenChecker, TokenCheckerError } = tc;
const h = require('./helpers');

const CALL_TIMEOUT_MS = 300;
const LATENCY_MS = 5000;

let fake;
let checker;

before(async () => {
  fake = await h.startFake();
  checker = new TokenChecker(h.config(fake, { callTimeoutMs: CALL_TIMEOUT_MS, requestTimeoutMs: 10000, maxRetries: 1 }));
});

after(async () => {
  if (checker) checker.close();
  if (fake) await fake.stop();
});

const spec = () => ({
  identity_set: [h.ALICE_ID],
  groups: [h.GROUP_MEMBER],
  dependent_tokens: [{ scope: h.TRANSFER_SCOPE, resource_server: 'transfer.api.globus.org' }],
});

describe('callTimeoutMs', () => {
  it('is the library key call_timeout_ms', () => {
    assert.equal(JSON.parse(tc._configToJson({ callTimeoutMs: 1234 })).call_timeout_ms, 1234);
    assert.ok(tc._configKeys.includes('call_timeout_ms'));
  });

  const cases = [
    // [name, the token's check cached first, fault, waits for the deadline, call]
    ['introspection', false, { endpoint: 'introspect', latency_ms: LATENCY_MS }, true, (t) => checker.check(t)],
    ['groups (authorize)', true, { endpoint: 'groups', latency_ms: LATENCY_MS }, true,
      (t) => checker.authorize(t, [h.GROUP(h.GROUP_MEMBER)])],
    ['dependent-token grant', true, { endpoint: 'dependent_token', latency_ms: LATENCY_MS }, true,
      (t) => checker.dependentToken(t, h.TRANSFER_SCOPE)],
    // a Retry-After longer than the time left: the call ends at once instead of sleeping
    ['Retry-After', false, { endpoint: 'introspect', status: 503, retry_after: 10 }, false, (t) => checker.check(t)],
  ];
  for (const [name, cached, fault, waits, call] of cases) {
    it(`bounds a call: ${name}`, async () => {
      const t = await h.newToken(fake, spec(), 'call-timeout');
      if (cached) await checker.check(t);
      await fake.setFault(fault);
      try {
        const started = performance.now();
        await assert.rejects(call(t), (err) => {
          assert.ok(err instanceof TokenCheckerError, String(err));
          assert.equal(err.code, 'TC_AUTH_UNAVAILABLE', err.message);
          return true;
        });
        const elapsed = performance.now() - started;
        assert.ok(elapsed < 2500, `took ${elapsed} ms with a ${CALL_TIMEOUT_MS} ms call timeout (the server: ${LATENCY_MS} ms)`);
        if (waits) assert.ok(elapsed >= CALL_TIMEOUT_MS - 50, `failed after ${elapsed} ms, before the call timeout`);
      } finally {
        await fake.clearFaults();
      }
    });
  }

  it('the library refuses values outside 1..600000, naming the key', () => {
    const base = h.config(fake, { verifyCredentials: false });
    for (const ms of [1, 600000]) new TokenChecker({ ...base, callTimeoutMs: ms }).close();
    for (const ms of [0, -1, 600001]) {
      assert.throws(() => new TokenChecker({ ...base, callTimeoutMs: ms }), (err) => {
        assert.equal(err.code, 'TC_INVALID_CONFIG', `${ms}: ${err.message}`);
        assert.match(err.message, /call_timeout_ms/);
        return true;
      });
    }
  });
});
