'use strict';
// checkMany / authorizeMany: one native call for a batch of tokens (the answer path of each, as
// check()/authorize()), the rest fetched concurrently; per-token results in order, failures as
// TokenCheckerErrors in place. Against the real fake Globus server.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('crypto');

const tc = require('..');
const { TokenChecker, TokenCheckerError, groupPrincipal, identityPrincipal } = tc;
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

async function users(n, groups = [h.GROUP_MEMBER]) {
  const specs = {};
  const tokens = [];
  for (let i = 0; i < n; i++) {
    const t = h.uniqueToken('many');
    const sub = crypto.randomUUID();
    specs[t] = { sub, identity_set: [sub], username: `m${i}@example.org`, name: `Many ${i} é`, groups };
    tokens.push(t);
  }
  await fake.addTokens(specs);
  return { tokens, specs };
}

const withoutCache = ({ cache, ...rest }) => rest;

function isError(v, code) {
  assert.ok(v instanceof TokenCheckerError, `expected a TokenCheckerError, got ${JSON.stringify(v)}`);
  assert.equal(v.code, code, v.message);
}

describe('checkMany', () => {
  it('cached, new and failing tokens in one batch: results in order, the same as check()\'s', async () => {
    const { tokens, specs } = await users(30);
    for (const t of tokens.slice(0, 20)) await checker.check(t); // cached; 10 are new
    const inactive = await h.newToken(fake, { active: false });
    await assert.rejects(checker.check(inactive), { code: 'TC_INACTIVE_TOKEN' });
    const batch = [...tokens, inactive, '', 'a\u0000b', 42, tokens[0], tokens[25]];
    const results = await checker.checkMany(batch);
    assert.equal(results.length, batch.length);
    for (let i = 0; i < 30; i++) {
      const s = results[i];
      assert.equal(s.username, specs[tokens[i]].username);
      assert.equal(s.name, specs[tokens[i]].name);
      if (i < 20) assert.equal(s.cache.source, 'memory');
      else assert.ok(['network', 'coalesced'].includes(s.cache.source), s.cache.source); // tokens[25] twice
      assert.deepEqual(withoutCache(s), withoutCache(await checker.check(tokens[i])));
    }
    isError(results[30], 'TC_INACTIVE_TOKEN');
    isError(results[31], 'TC_INVALID_ARGUMENT');
    isError(results[32], 'TC_INVALID_ARGUMENT');
    assert.match(results[32].message, /NUL/);
    isError(results[33], 'TC_INVALID_ARGUMENT');
    assert.equal(results[34].sub, specs[tokens[0]].sub);
    assert.ok(['network', 'coalesced', 'memory'].includes(results[35].cache.source));
    // every result its own object, the arrays frozen and shared with check()'s
    assert.notEqual(results[0], results[34]);
    assert.equal(results[0].identities, results[34].identities);
  });

  it('all cached: settled without a thread hop; batches past one native call (4096); empty; iterables', async () => {
    const { tokens } = await users(5000);
    for (let i = 0; i < tokens.length; i += 500) await checker.checkMany(tokens.slice(i, i + 500));
    let settled = null;
    const p = checker.checkMany(tokens);
    p.then((r) => { settled = r; });
    await null;
    assert.ok(settled !== null, 'already settled');
    const results = await p;
    assert.equal(results.length, 5000);
    results.forEach((s, i) => assert.equal(s.username, `m${i}@example.org`));
    assert.deepEqual(await checker.checkMany([]), []);
    const fromSet = await checker.checkMany(new Set(tokens.slice(0, 3)));
    assert.deepEqual(fromSet.map((s) => s.username), ['m0@example.org', 'm1@example.org', 'm2@example.org']);
  });

  it('rejects a non-list, and a closed checker', async () => {
    for (const bad of [undefined, null, 'tok', 5, {}]) {
      await assert.rejects(checker.checkMany(bad), { code: 'TC_INVALID_ARGUMENT' });
    }
    const c = new TokenChecker(h.config(fake, { verifyCredentials: false }));
    c.close();
    await assert.rejects(c.checkMany(['tok-valid']), { code: 'TC_CLOSED' });
    await assert.rejects(c.authorizeMany(['tok-valid'], ['public'], { allowPublic: true }), { code: 'TC_CLOSED' });
  });

  it('fetchGroups eager: the document path, groups listed', async () => {
    const eager = new TokenChecker(h.config(fake, { verifyCredentials: false, fetchGroups: 'eager' }));
    try {
      const { tokens } = await users(3, [h.GROUP_ADMIN]);
      const results = await eager.checkMany([...tokens, 'tok-inactive']);
      for (const s of results.slice(0, 3)) assert.deepEqual(s.groups, [h.GROUP_ADMIN]);
      isError(results[3], 'TC_INACTIVE_TOKEN');
      assert.equal((await eager.checkMany(tokens))[0].cache.source, 'memory');
    } finally {
      eager.close();
    }
  });
});

describe('authorizeMany', () => {
  it('by group with a policy or a list: matches, refusals and fills in one batch', async () => {
    const { tokens: members } = await users(20, [h.GROUP_MEMBER]);
    const { tokens: others } = await users(5, [h.GROUP_ADMIN]);
    const policy = checker.policy([identityPrincipal('nobody'), groupPrincipal(h.GROUP_MEMBER)]);
    try {
      await checker.authorizeMany(members.slice(0, 10), policy); // cached with their groups; 10 new
      const batch = [...members, ...others, 'tok-expired', ''];
      for (const allowed of [policy, policy.principals]) {
        const results = await checker.authorizeMany(batch, allowed);
        for (let i = 0; i < 20; i++) {
          assert.equal(results[i].authorization.matched, groupPrincipal(h.GROUP_MEMBER));
          assert.deepEqual(results[i].authorization, { authorized: true, matched: groupPrincipal(h.GROUP_MEMBER) });
        }
        for (let i = 20; i < 25; i++) isError(results[i], 'TC_NOT_AUTHORIZED');
        isError(results[25], 'TC_TOKEN_EXPIRED');
        isError(results[26], 'TC_INVALID_ARGUMENT');
      }
      const again = await checker.authorizeMany(members, policy);
      for (const s of again) assert.equal(s.cache.source, 'memory');
      assert.equal(again[0].authorization, (await checker.authorize(members[0], policy)).authorization);
      await assert.rejects(checker.authorizeMany(members, policy, { allowPublic: true }), { code: 'TC_INVALID_ARGUMENT' });
      await assert.rejects(checker.authorizeMany(members, 'public'), { code: 'TC_INVALID_ARGUMENT' });
    } finally {
      policy.close();
    }
    const results = await checker.authorizeMany(members.slice(0, 2), policy);
    for (const r of results) isError(r, 'TC_INVALID_ARGUMENT');
    assert.match(results[0].message, /policy is closed/);
  });
});
