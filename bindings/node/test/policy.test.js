'use strict';
// authorize() on the answer path: compiled policies (Policy, checker.policy, tc_policy_new),
// tc_try_authorize_answer on a cached token and groups, tc_authorize_async to fill the caches on
// a miss; the policy kept per request; principal helpers. Against the real fake Globus server.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('crypto');
const v8 = require('v8');
const vm = require('vm');

const tc = require('..');
const { TokenChecker, TokenCheckerError, Policy, identityPrincipal, groupPrincipal, resultMemo } = tc;
const h = require('./helpers');

let fake;
let checker;

before(async () => {
  fake = await h.startFake();
  checker = new TokenChecker(h.config(fake, { verifyCredentials: false, maxRetries: 0 }));
});

after(async () => {
  if (checker) checker.close();
  if (fake) await fake.stop();
});

async function rejectsWith(promise, code) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof TokenCheckerError, `expected a TokenCheckerError, got ${err}`);
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    return true;
  });
}

/** A user of their own, in `groups`. */
async function user(groups = [h.GROUP_MEMBER], label = 'pol') {
  const sub = crypto.randomUUID();
  const token = await h.newToken(fake, { sub, identity_set: [sub], username: `${sub}@example.org`, groups }, label);
  return { token, sub };
}

/** The library's own authorization document for a cached token (tc_try_authorize). */
function documentOf(c, token, request) {
  const answer = tc._native.authorize(c, token, request, () => assert.fail('expected a cached answer'));
  assert.ok(Array.isArray(answer), 'answered from the cache');
  return [answer[0], JSON.parse(answer[1])];
}

describe('principal helpers', () => {
  it('identityPrincipal and groupPrincipal', () => {
    assert.equal(identityPrincipal(h.ALICE_ID), h.IDENTITY(h.ALICE_ID));
    assert.equal(groupPrincipal(h.GROUP_ADMIN), h.GROUP(h.GROUP_ADMIN));
    for (const bad of ['', undefined, null, 5, {}, ['x']]) {
      assert.throws(() => identityPrincipal(bad), { code: 'TC_INVALID_ARGUMENT' });
      assert.throws(() => groupPrincipal(bad), { code: 'TC_INVALID_ARGUMENT' });
    }
  });

  it('they name what the library matches', async () => {
    const s = await checker.authorize('tok-valid', [groupPrincipal(h.GROUP_ADMIN)]);
    assert.equal(s.authorization.matched, groupPrincipal(h.GROUP_ADMIN));
    const t = await checker.authorize('tok-valid', [identityPrincipal(h.ALICE_ID2)]);
    assert.equal(t.authorization.matched, identityPrincipal(h.ALICE_ID2));
  });
});

describe('Policy', () => {
  it('compiles once: the library\'s principals, frozen; options kept', () => {
    const list = [groupPrincipal(h.GROUP_MEMBER), 'public'];
    const p = checker.policy(list, { allowPublic: true });
    assert.ok(p instanceof Policy);
    assert.deepEqual(p.principals, list);
    assert.ok(Object.isFrozen(p.principals));
    assert.ok(Object.isFrozen(p));
    assert.equal(p.allowPublic, true);
    assert.equal(p.allowAllAuthenticatedUsers, false);
    assert.equal(p.closed, false);
    list.push('changed');
    assert.equal(p.principals.length, 2, 'the caller\'s list is not the policy\'s');
    p.close();
    p.close();
    assert.equal(p.closed, true);
    const q = new Policy(new Set([identityPrincipal(h.BOB_ID)]));
    assert.deepEqual(q.principals, [identityPrincipal(h.BOB_ID)]);
    q.close();
  });

  it('refuses bad requests', () => {
    for (const [list, options] of [['public'], [undefined], [[5]], [['public'], { allow_public: true }],
      [['public'], { allowPublic: 'yes' }], [['a\u0000b']], [['public'], 'x']]) {
      assert.throws(() => new Policy(list, options), (err) => {
        assert.ok(err instanceof TokenCheckerError);
        assert.equal(err.code, 'TC_INVALID_ARGUMENT', `${JSON.stringify(list)}: ${err.message}`);
        return true;
      });
    }
  });

  it('authorizes with the match created once per policy; cached tokens and groups answer synchronously', async () => {
    const { token, sub } = await user([h.GROUP_MEMBER]);
    const p = checker.policy([identityPrincipal('nobody'), groupPrincipal(h.GROUP_MEMBER)]);
    try {
      const first = await checker.authorize(token, p); // fills the token's answer and its groups
      assert.equal(first.cache.source, 'network');
      assert.equal(first.authorization.matched, p.principals[1]);
      assert.equal(first.sub, sub);
      const memo = resultMemo();
      let settled = null;
      const pending = checker.authorize(token, p);
      pending.then((s) => { settled = s; });
      await null; // an already settled promise: its reaction runs in this microtask turn
      assert.ok(settled !== null, 'answered without a thread hop');
      const again = await pending;
      assert.equal(again.cache.source, 'memory');
      assert.equal(again.authorization.matched, p.principals[1]);
      assert.equal(again.authorization, first.authorization, 'one authorization object per principal');
      assert.ok(Object.isFrozen(again.authorization));
      assert.deepEqual(again.authorization, { authorized: true, matched: groupPrincipal(h.GROUP_MEMBER) });
      assert.equal(resultMemo().hits, memo.hits + 1);
      // the same answer and memo entry as check()'s
      const checked = await checker.check(token);
      assert.equal(checked.identities, again.identities);
      const { authorization, cache, ...rest } = again;
      const { cache: c2, ...checkedRest } = checked;
      assert.deepEqual(rest, checkedRest);
    } finally {
      p.close();
    }
  });

  it('results equal the library\'s authorization document (but for the groups, listed with fetchGroups eager)', async () => {
    const { token } = await user([h.GROUP_ADMIN]);
    const request = JSON.stringify({ allowed_principals: [groupPrincipal(h.GROUP_ADMIN)] });
    const s = await checker.authorize(token, [groupPrincipal(h.GROUP_ADMIN)]);
    const hit = await checker.authorize(token, [groupPrincipal(h.GROUP_ADMIN)]);
    const raw = tc._native.create(tc._configToJson(h.config(fake, { verifyCredentials: false })))[1];
    const [status, doc] = documentOf(raw, token, request);
    tc._native.close(raw);
    assert.equal(status, 0);
    assert.deepEqual(hit.authorization, doc.authorization);
    assert.equal(hit.sub, doc.sub);
    assert.deepEqual(hit.identities, doc.identities);
    assert.deepEqual(hit.principals, doc.principals.filter((p) => p.startsWith('urn:globus:auth:identity:')));
    assert.deepEqual(doc.groups, [h.GROUP_ADMIN]);
    assert.equal(hit.groups, null);
    assert.deepEqual(hit.authorization, s.authorization);
  });

  it('failures: not authorized (cached, synchronous), token failures first, unavailable groups', async () => {
    const { token } = await user([h.GROUP_MEMBER]);
    const p = checker.policy([groupPrincipal(h.GROUP_ADMIN)]);
    await rejectsWith(checker.authorize(token, p), 'TC_NOT_AUTHORIZED');
    await rejectsWith(checker.authorize(token, p), 'TC_NOT_AUTHORIZED');
    await rejectsWith(checker.authorize('tok-inactive', p), 'TC_INACTIVE_TOKEN');
    await rejectsWith(checker.authorize('tok-expired', p), 'TC_TOKEN_EXPIRED');
    await rejectsWith(checker.authorize('', p), 'TC_INVALID_ARGUMENT');
    await rejectsWith(checker.authorize(`${token}\u0000`, p), 'TC_INVALID_ARGUMENT');
    await rejectsWith(checker.authorize(token, p, { allowPublic: true }), 'TC_INVALID_ARGUMENT');
    const other = await user([h.GROUP_ADMIN]);
    await fake.setFault({ endpoint: 'groups', status: 500 });
    try {
      await rejectsWith(checker.authorize(other.token, p), 'TC_AUTH_UNAVAILABLE');
    } finally {
      await fake.clearFaults();
    }
    assert.equal((await checker.authorize(other.token, p)).authorization.matched, groupPrincipal(h.GROUP_ADMIN));
    p.close();
    await rejectsWith(checker.authorize(other.token, p), 'TC_INVALID_ARGUMENT');
  });

  it('identity, public and all_authenticated_users match without groups', async () => {
    const { token, sub } = await user([]);
    const before = (await fake.counters()).groups;
    const byId = checker.policy([groupPrincipal(h.GROUP_ADMIN), identityPrincipal(sub)]);
    const s = await checker.authorize(token, byId);
    assert.equal(s.authorization.matched, identityPrincipal(sub));
    assert.equal((await checker.authorize(token, byId)).cache.source, 'memory');
    assert.equal((await checker.authorize(token, ['public'], { allowPublic: true })).authorization.matched, 'public');
    assert.equal((await checker.authorize(token, ['all_authenticated_users'], { allowAllAuthenticatedUsers: true }))
      .authorization.matched, 'all_authenticated_users');
    await rejectsWith(checker.authorize(token, ['public']), 'TC_NOT_AUTHORIZED');
    assert.equal((await fake.counters()).groups, before, 'no Groups call');
    byId.close();
  });

  it('a closed checker rejects TC_CLOSED', async () => {
    const c = new TokenChecker(h.config(fake, { verifyCredentials: false }));
    const p = c.policy(['public'], { allowPublic: true });
    c.close();
    await rejectsWith(c.authorize('tok-valid', p), 'TC_CLOSED');
    p.close();
  });

  it('fetchGroups eager: the document path, groups listed', async () => {
    const eager = new TokenChecker(h.config(fake, { verifyCredentials: false, fetchGroups: 'eager' }));
    try {
      const { token } = await user([h.GROUP_MEMBER, h.GROUP_ADMIN]);
      const p = eager.policy([groupPrincipal(h.GROUP_ADMIN)]);
      const first = await eager.authorize(token, p);
      const s = await eager.authorize(token, p);
      assert.equal(s.cache.source, 'memory');
      assert.equal(s.groupsStatus, 'available');
      assert.deepEqual([...s.groups].sort(), [h.GROUP_ADMIN, h.GROUP_MEMBER].sort());
      assert.equal(s.authorization.matched, groupPrincipal(h.GROUP_ADMIN));
      assert.deepEqual(first.authorization, s.authorization);
      await rejectsWith(eager.authorize(token, [groupPrincipal(h.GROUP_PENDING)]), 'TC_NOT_AUTHORIZED');
      p.close();
    } finally {
      eager.close();
    }
  });

  it('policies left to the garbage collector are released', () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc');
    for (let i = 0; i < 2000; i++) new Policy([identityPrincipal(`id-${i}`), groupPrincipal(h.GROUP_MEMBER)]);
    gc();
    gc();
  });
});

describe('authorize(token, list): one compiled policy per request', () => {
  it('the same list object, or the same request, reuses the policy', async () => {
    const { token } = await user([h.GROUP_MEMBER]);
    const list = [groupPrincipal(h.GROUP_MEMBER)];
    const a = await checker.authorize(token, list);
    const b = await checker.authorize(token, list);
    const c = await checker.authorize(token, [groupPrincipal(h.GROUP_MEMBER)]);
    const d = await checker.authorize(token, new Set(list));
    assert.equal(b.cache.source, 'memory');
    // one authorization object per principal of a policy: one policy served them all
    assert.equal(a.authorization, b.authorization);
    assert.equal(b.authorization, c.authorization);
    assert.equal(c.authorization, d.authorization);
    // options are part of the request
    const e = await checker.authorize(token, list, { allowPublic: true });
    assert.notEqual(e.authorization, a.authorization);
    assert.deepEqual(e.authorization, a.authorization);
  });

  it('a list changed in place gets a policy of its own', async () => {
    const { token, sub } = await user([h.GROUP_MEMBER]);
    const list = [groupPrincipal(h.GROUP_ADMIN)];
    await rejectsWith(checker.authorize(token, list), 'TC_NOT_AUTHORIZED');
    list.push(identityPrincipal(sub));
    assert.equal((await checker.authorize(token, list)).authorization.matched, identityPrincipal(sub));
    list[1] = groupPrincipal(h.GROUP_MEMBER);
    assert.equal((await checker.authorize(token, list)).authorization.matched, groupPrincipal(h.GROUP_MEMBER));
    list.length = 1;
    await rejectsWith(checker.authorize(token, list), 'TC_NOT_AUTHORIZED');
    await rejectsWith(checker.authorize(token, list, { allowPublic: 'no' }), 'TC_INVALID_ARGUMENT');
  });

  it('many distinct requests: the kept policies stay bounded, every answer right', async () => {
    const { token, sub } = await user([h.GROUP_MEMBER]);
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 150; i++) {
        const list = [identityPrincipal(`x-${i}`), identityPrincipal(sub)];
        const s = await checker.authorize(token, list);
        assert.equal(s.authorization.matched, identityPrincipal(sub));
        await rejectsWith(checker.authorize(token, [identityPrincipal(`x-${i}`)]), 'TC_NOT_AUTHORIZED');
      }
    }
  });
});
