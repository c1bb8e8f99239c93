'use strict';
// The answer path of check() and its memo (src/addon.c "the answer memo": the object made from an
// answer's fields, keyed by answer id, bounded by TOKENCHECKER_MEMO_BYTES): results equal to the
// library's document, to the byte (escapes, non-ASCII, NUL); fresh objects with frozen shared
// arrays; failures untouched; purges and refetches (new id, new data); the byte bound, small or
// off, in child processes (the variable is read once per process); workers.
const { describe, it, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('crypto');
const path = require('path');
const { spawn } = require('child_process');

const tc = require('..');
const { TokenChecker, resultMemo } = tc;
const h = require('./helpers');

let fake;
let checker;
let raw; // a native handle, for the document path (tc_try_check) and answerOut

before(async () => {
  fake = await h.startFake();
  checker = new TokenChecker(h.config(fake, {
    verifyCredentials: false,
    cacheConfig: { backend: 'memory', timeout: 300, maxEntries: 100000 },
  }));
  raw = tc._native.create(tc._configToJson(h.config(fake, { verifyCredentials: false })))[1];
});

after(async () => {
  if (raw) tc._native.close(raw);
  if (checker) checker.close();
  if (fake) await fake.stop();
});

beforeEach(() => {
  tc._memoClear(); // empty, counters reset
});

/** A token whose result is its own: a distinct user. */
function userSpec(n, extra = {}) {
  const sub = crypto.randomUUID();
  return {
    sub,
    identity_set: [sub],
    username: `user${n}@example.org`,
    name: `User ${n}`,
    email: `user${n}+mail@example.org`,
    ...extra,
  };
}

async function addUsers(n, label, extra) {
  const specs = {};
  const tokens = [];
  for (let i = 0; i < n; i++) {
    const t = h.uniqueToken(label);
    specs[t] = userSpec(i, extra);
    tokens.push(t);
  }
  for (let i = 0; i < n; i += 2000) {
    await fake.addTokens(Object.fromEntries(tokens.slice(i, i + 2000).map((t) => [t, specs[t]])));
  }
  return { tokens, specs };
}

/** The AuthState without its per-check `cache` member. */
function withoutCache(s) {
  const { cache, ...rest } = s;
  assert.equal(typeof cache.ageMs, 'number');
  return rest;
}

/** The library's result document of a cached token (tc_try_check), as an AuthState. */
function documentState(token) {
  const answer = tc._native.check(raw, token, () => assert.fail('expected a cached answer'));
  assert.ok(Array.isArray(answer), 'cached');
  assert.equal(answer[0], 0, answer[1]);
  const d = JSON.parse(answer[1]);
  return {
    active: d.active, sub: d.sub, effectiveIdentity: d.effective_identity, identities: d.identities,
    username: d.username, name: d.name, email: d.email, clientId: d.client_id, scopes: d.scopes, aud: d.aud,
    exp: d.exp, nbf: d.nbf, iat: d.iat, groups: d.groups, groupsStatus: d.groups_status,
    groupsError: d.groups_error ?? null, principals: d.principals,
  };
}

async function rejectsWith(promise, code) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof tc.TokenCheckerError, `expected a TokenCheckerError, got ${err}`);
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    return true;
  });
}

describe('the answer path and its memo', () => {
  it('distinct tokens get their own results, the library\'s document\'s, also from the memo', async () => {
    const { tokens, specs } = await addUsers(50, 'memo-distinct');
    const first = new Map();
    for (const t of tokens) {
      const s = await checker.check(t);
      assert.equal(s.cache.source, 'network');
      first.set(t, s);
    }
    const before = resultMemo();
    // interleaved, several rounds: all hits (the first check made and kept each template)
    for (let round = 0; round < 3; round++) {
      const order = round === 1 ? [...tokens].reverse() : tokens;
      const states = await Promise.all(order.map((t) => checker.check(t)));
      order.forEach((t, i) => {
        const s = states[i];
        assert.equal(s.cache.source, 'memory');
        assert.equal(s.sub, specs[t].sub);
        assert.equal(s.username, specs[t].username);
        assert.equal(s.name, specs[t].name);
        assert.equal(s.email, specs[t].email);
        assert.deepEqual(s.identities, [specs[t].sub]);
        assert.deepEqual(s.principals, [h.IDENTITY(specs[t].sub)]);
        assert.deepEqual(withoutCache(s), withoutCache(first.get(t)));
        assert.deepEqual(withoutCache(s), documentState(t));
      });
    }
    const m = resultMemo();
    assert.equal(m.entries, 50);
    assert.equal(m.misses - before.misses, 0);
    assert.equal(m.hits - before.hits, 150);
    assert.ok(m.bytes > 50 * m.entryOverhead && m.bytes === m.processBytes, JSON.stringify(m));
  });

  it('is keyed by answer id: every cached answer has its own, identical ones too', async () => {
    const now = Math.floor(Date.now() / 1000);
    const spec = { ...userSpec(1), exp: now + 3600, iat: now - 10, nbf: now - 10 };
    const a = await h.newToken(fake, spec, 'memo-same');
    const b = await h.newToken(fake, spec, 'memo-same');
    const other = await h.newToken(fake, { ...spec, email: 'other@example.org' }, 'memo-same');
    for (const t of [a, b, other]) await checker.check(t); // network, then the answer path
    const ids = [];
    for (const t of [a, b, other]) {
      assert.equal(tc._native.checkAnswer(raw, t), undefined, 'a hit returns nothing');
      ids.push(tc._native.answerOut[4]);
    }
    assert.equal(new Set(ids).size, 3);
    for (const id of ids) assert.ok(Number.isInteger(id) && id > 0, String(id));
    for (let round = 0; round < 2; round++) for (const t of [a, b, other]) await checker.check(t);
    const m = resultMemo();
    assert.equal(m.entries, 3);
    assert.equal(m.misses, 3);
    assert.equal(m.hits, 9);
    assert.equal((await checker.check(other)).email, 'other@example.org');
    assert.equal((await checker.check(a)).email, spec.email);
    assert.deepEqual(withoutCache(await checker.check(a)), withoutCache(await checker.check(b)));
  });

  it('a purge and refetch gives a new id and new data', async () => {
    const n = tc._native;
    const t = await h.newToken(fake, userSpec(21), 'memo-refetch');
    await checker.check(t);
    assert.equal((await checker.check(t)).username, 'user21@example.org');
    assert.equal(n.checkAnswer(raw, t), undefined);
    const id1 = n.answerOut[4];
    const slot1 = n.answerOut[0];
    assert.equal(tc._slots[slot1].username, 'user21@example.org');
    assert.equal(n.checkAnswer(raw, t), undefined);
    assert.equal(n.answerOut[4], id1, 'every hit of one cached answer has its id');
    await fake.addTokens({ [t]: userSpec(22) }); // the server's answer changes
    assert.equal((await checker.check(t)).username, 'user21@example.org', 'still cached');
    await checker.purge(t);
    assert.equal(resultMemo().entries, 0);
    const fresh = await checker.check(t);
    assert.equal(fresh.cache.source, 'network');
    assert.equal(fresh.username, 'user22@example.org');
    const hit = await checker.check(t);
    assert.equal(hit.cache.source, 'memory');
    assert.equal(hit.username, 'user22@example.org');
    assert.equal(n.checkAnswer(raw, t), undefined);
    assert.ok(n.answerOut[4] > id1, `${n.answerOut[4]} > ${id1}`);
  });

  it('an answer fetched again after its entry expired has a new id: the old entry is never hit again', async () => {
    const cacheConfig = { backend: 'memory', timeout: 300, maxEntries: 100000 };
    const short = new TokenChecker(h.config(fake, { verifyCredentials: false, cacheConfig: { ...cacheConfig, timeout: 1 } }));
    try {
      const t = await h.newToken(fake, userSpec(24), 'memo-expired');
      await short.check(t);
      assert.equal((await short.check(t)).username, 'user24@example.org');
      await fake.addTokens({ [t]: userSpec(25) });
      await h.sleep(1200);
      assert.equal((await short.check(t)).cache.source, 'network');
      const hit = await short.check(t);
      assert.equal(hit.cache.source, 'memory');
      assert.equal(hit.username, 'user25@example.org');
      const m = resultMemo();
      assert.equal(m.entries, 2, 'the old entry stays until evicted, never hit');
      assert.equal(m.misses, 2);
      assert.equal(m.hits, 2);
    } finally {
      short.close();
      new TokenChecker(h.config(fake, { verifyCredentials: false, cacheConfig })).close(); // as before()
    }
  });

  it('several identities, no identity set, absent members: the same as the document', async () => {
    const [x, y] = [crypto.randomUUID(), crypto.randomUUID()];
    const several = await h.newToken(fake, userSpec(23, { sub: x, identity_set: [x, y], aud: ['test-client', 'other'] }), 'memo-ids');
    const noSet = await h.newToken(fake, { ...userSpec(26), omit_identity_set: true }, 'memo-ids');
    const otherSub = await h.newToken(fake, userSpec(27, { identity_set: [y, x] }), 'memo-ids');
    for (const t of [several, noSet, otherSub]) {
      const network = await checker.check(t);
      const made = await checker.check(t); // the template made when the network answer arrived
      const hit = await checker.check(t);
      assert.deepEqual(Object.keys(made), Object.keys(network));
      assert.deepEqual(Object.keys(hit.cache), ['source', 'ageMs']);
      assert.deepEqual(withoutCache(made), withoutCache(network));
      assert.deepEqual(withoutCache(hit), documentState(t));
    }
    const s = await checker.check(several);
    assert.deepEqual(s.identities, [x, y]);
    assert.deepEqual(s.principals, [h.IDENTITY(x), h.IDENTITY(y)]);
    assert.equal(s.effectiveIdentity, h.IDENTITY(x));
    const n = await checker.check(noSet);
    assert.deepEqual(n.identities, []);
    assert.deepEqual(n.principals, []);
  });

  it('every result is a new object; its arrays are frozen and shared; its cache its own', async () => {
    const t = await h.newToken(fake, userSpec(7, { scope: `${h.SCOPE} openid email` }), 'memo-copy');
    const network = await checker.check(t);
    const one = await checker.check(t);
    const two = await checker.check(t);
    assert.notEqual(one, two);
    assert.notEqual(one.cache, two.cache);
    assert.equal(Object.isFrozen(one), false);
    for (const k of ['identities', 'scopes', 'aud', 'principals']) {
      assert.equal(one[k], two[k], k);
      assert.equal(one[k], network[k], k);
      assert.ok(Object.isFrozen(one[k]), k);
    }
    assert.throws(() => { 'use strict'; one.scopes.push('mine'); }, TypeError);
    one.username = 'changed';
    one.cache.source = 'changed';
    one.extra = true;
    const three = await checker.check(t);
    assert.deepEqual(withoutCache(three), withoutCache(network));
    assert.equal(three.cache.source, 'memory');
    assert.equal(three.extra, undefined);
    assert.ok(three.scopes.includes('email'));
    // lists many answers share are kept once: the same frozen array in other users' results
    const u = await h.newToken(fake, userSpec(8, { scope: `${h.SCOPE} openid email` }), 'memo-copy');
    await checker.check(u);
    const other = await checker.check(u);
    assert.equal(other.scopes, three.scopes);
    assert.equal(other.aud, three.aud);
    assert.notEqual(other.identities, three.identities);
  });

  it('groups (eager) take the document path: groups listed, arrays frozen, nothing memoised', async () => {
    const eager = new TokenChecker(h.config(fake, { verifyCredentials: false, fetchGroups: 'eager' }));
    try {
      const t = await h.newToken(fake, userSpec(3, { groups: [h.GROUP_MEMBER, h.GROUP_ADMIN] }), 'memo-groups');
      const u = await h.newToken(fake, userSpec(4, { groups: [h.GROUP_MEMBER] }), 'memo-groups');
      const first = await eager.check(t);
      await eager.check(u);
      const a = await eager.check(t);
      const b = await eager.check(u);
      assert.equal(a.cache.source, 'memory');
      assert.equal(a.groupsStatus, 'available');
      assert.deepEqual([...a.groups].sort(), [h.GROUP_ADMIN, h.GROUP_MEMBER].sort());
      assert.deepEqual(b.groups, [h.GROUP_MEMBER]);
      assert.ok(Object.isFrozen(a.groups));
      assert.deepEqual(withoutCache(a), withoutCache(first));
      assert.equal(resultMemo().entries, 0);
    } finally {
      eager.close();
    }
  });

  it('escaped, non-ASCII and NUL characters decode exactly (tc_answer_fields, no JSON)', async () => {
    const tricky = 'Eve ","cache":{"source":"memory","age_ms":1}} \\ "quoted" é 😀 \u2028 \u0000 end';
    const emails = ['",\\"cache\\":{}@example.org', 'zoë@exämple.org', 'a\u0001b\u001f@example.org'];
    const tokens = [];
    for (const [i, email] of emails.entries()) {
      tokens.push(await h.newToken(fake, userSpec(9 + i, { name: `${tricky} ${i}`, email, username: `ü${i}@example.org` }), 'memo-tricky'));
    }
    for (const [i, t] of tokens.entries()) {
      const first = await checker.check(t);
      assert.equal(first.name, `${tricky} ${i}`);
      const hit = await checker.check(t);
      assert.equal(hit.cache.source, 'memory');
      assert.equal(hit.name, `${tricky} ${i}`);
      assert.equal(hit.email, emails[i]);
      assert.equal(hit.username, `ü${i}@example.org`);
      assert.deepEqual(withoutCache(hit), documentState(t));
    }
    assert.equal(resultMemo().entries, 3);
  });

  it('cached failures and invalid input are unaffected and never memoised', async () => {
    const inactive = await h.newToken(fake, { active: false }, 'memo-neg');
    const expiring = await h.newToken(fake, userSpec(5, { exp: Math.floor(Date.now() / 1000) + 2 }), 'memo-neg');
    const wrongScope = await h.newToken(fake, userSpec(6, { scope: 'openid' }), 'memo-neg');
    const wrongAud = await h.newToken(fake, userSpec(8, { aud: ['someone-else'] }), 'memo-neg');
    for (let i = 0; i < 3; i++) {
      await rejectsWith(checker.check(inactive), 'TC_INACTIVE_TOKEN');
      await rejectsWith(checker.check(wrongScope), 'TC_INSUFFICIENT_SCOPE');
      await rejectsWith(checker.check(wrongAud), 'TC_WRONG_AUDIENCE');
      await rejectsWith(checker.check(''), 'TC_INVALID_ARGUMENT');
      await rejectsWith(checker.check('a\u0000b'), 'TC_INVALID_ARGUMENT');
      await rejectsWith(checker.check(17), 'TC_INVALID_ARGUMENT');
    }
    assert.deepEqual(resultMemo().entries, 0);
    // a memoised success that expires: the library's verdict wins (the memo never answers alone)
    const strict = new TokenChecker(h.config(fake, { verifyCredentials: false, leewayS: 0 }));
    try {
      assert.equal((await strict.check(expiring)).cache.source, 'network');
      assert.equal((await strict.check(expiring)).cache.source, 'memory');
      assert.equal(resultMemo().entries, 1);
      await h.sleep(3100);
      await rejectsWith(strict.check(expiring), 'TC_TOKEN_EXPIRED');
      await rejectsWith(strict.check(expiring), 'TC_TOKEN_EXPIRED');
    } finally {
      strict.close();
    }
  });

  it('tokens around and beyond the addon\'s 1 KiB stack buffer are never truncated', async () => {
    const big = new TokenChecker(h.config(fake, { verifyCredentials: false, maxTokenBytes: 4096 }));
    try {
      const long = `tok-long-${'x'.repeat(1200)}-${crypto.randomBytes(4).toString('hex')}`;
      await fake.addTokens({ [long]: userSpec(11) });
      assert.equal((await big.check(long)).cache.source, 'network');
      const hit = await big.check(long);
      assert.equal(hit.cache.source, 'memory');
      assert.equal(hit.username, 'user11@example.org');
      for (let len = 1012; len <= 1026; len++) {
        // An ASCII token of `len` bytes is valid (and cached); the same followed by a multi-byte
        // character is not a valid token at all. Were the addon to cut the string where the
        // character no longer fits its buffer, the second would pass as the first.
        const ascii = `tok-${String(len).padStart(4, '0')}-${'y'.repeat(len - 9)}`;
        assert.equal(Buffer.byteLength(ascii), len);
        await fake.addTokens({ [ascii]: userSpec(len) });
        assert.equal((await big.check(ascii)).username, `user${len}@example.org`);
        assert.equal((await big.check(ascii)).cache.source, 'memory');
        for (const tail of ['é', '€', '😀']) {
          await rejectsWith(big.check(ascii + tail), 'TC_INVALID_ARGUMENT');
        }
      }
    } finally {
      big.close();
    }
  });

  it('the default bound: 16 MiB for the process, counted in bytes, never entries', () => {
    const m = resultMemo();
    if (process.env.TOKENCHECKER_MEMO_BYTES === undefined) assert.equal(m.limitBytes, 16 * 1024 * 1024);
    assert.equal(m.limitValid, true);
    assert.ok(m.entryOverhead > 0);
    assert.deepEqual(Object.keys(m).sort(), ['bytes', 'entries', 'entryOverhead', 'evictions', 'hits', 'limitBytes',
      'limitValid', 'misses', 'processBytes', 'refused']);
    // the overhead is stated in the memo's file
    const src = require('fs').readFileSync(path.join(__dirname, '..', 'src', 'addon.c'), 'utf8');
    assert.match(src, new RegExp(`#define MEMO_ENTRY_OVERHEAD ${m.entryOverhead}u`));
  });

  it('purge and purgeIdentity empty it', async () => {
    const { tokens, specs } = await addUsers(3, 'memo-purge');
    for (const t of tokens) await checker.check(t);
    for (const t of tokens) await checker.check(t);
    assert.equal(resultMemo().entries, 3);
    await checker.purge(tokens[0]);
    assert.equal(resultMemo().entries, 0);
    assert.equal(resultMemo().processBytes, 0);
    assert.equal((await checker.check(tokens[0])).cache.source, 'network');
    assert.equal((await checker.check(tokens[1])).cache.source, 'memory');
    assert.equal(resultMemo().entries, 2);
    await checker.purgeIdentity(specs[tokens[1]].sub);
    assert.equal(resultMemo().entries, 0);
  });

  it('resultMemo takes no options (the bound is TOKENCHECKER_MEMO_BYTES)', () => {
    for (const bad of [{ maxEntries: 1 }, {}, 'x', null]) {
      assert.throws(() => resultMemo(bad), { code: 'TC_INVALID_ARGUMENT' }, JSON.stringify(bad));
    }
  });

  it('the native answer path: answerOut, templates in slots, failures, bad handles', async () => {
    const n = tc._native;
    const out = n.answerOut;
    assert.ok(out instanceof Float64Array && out.length === 8);
    assert.throws(() => n.checkAnswer({}, 'tok-valid'), TypeError);
    assert.throws(() => n.checkAnswer(), TypeError);
    assert.throws(() => n.setup([], [], () => {}), TypeError, 'once');
    const t = await h.newToken(fake, userSpec(12), 'memo-native');
    await checker.check(t);
    tc._memoClear();
    const made = n.checkAnswer(raw, t); // a miss: the template, made now
    assert.ok(Object.isFrozen(made));
    assert.equal(made.username, 'user12@example.org');
    assert.equal(tc._sources[out[1]], 'memory');
    assert.ok(out[2] >= 0);
    const id = out[4];
    assert.equal(n.checkAnswer(raw, t), undefined); // a hit: nothing
    assert.equal(out[4], id);
    assert.equal(tc._slots[out[0]], made);
    // not cached: slot -1
    assert.equal(n.checkAnswer(raw, h.uniqueToken('nope')), undefined);
    assert.equal(out[0], -1);
    // failures: [status, json]
    const inactive = await h.newToken(fake, { active: false }, 'memo-native');
    await rejectsWith(checker.check(inactive), 'TC_INACTIVE_TOKEN');
    const [st, json] = n.checkAnswer(raw, inactive);
    assert.equal(st, tc.Status.TC_INACTIVE_TOKEN);
    assert.equal(JSON.parse(json).error.code, 'TC_INACTIVE_TOKEN');
    assert.equal(n.checkAnswer(raw, '')[0], tc.Status.TC_INVALID_ARGUMENT);
    assert.match(n.checkAnswer(raw, 42)[1], /must be a string/);
    assert.match(n.checkAnswer(raw, 'a\u0000b')[1], /NUL/);
    assert.equal(n.noop(raw, t), undefined);
    const [, closed] = n.create(tc._configToJson(h.config(fake, { verifyCredentials: false })));
    n.close(closed);
    assert.equal(JSON.parse(n.checkAnswer(closed, t)[1]).error.code, 'TC_CLOSED');
  });
});

// ---- the byte bound, in child processes (TOKENCHECKER_MEMO_BYTES is read once per process) ----

const INDEX = JSON.stringify(path.resolve(__dirname, '..'));

function runChild(code, env = {}, args = []) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...args, '-e', code], {
      env: { ...process.env, FAKE_URL: fake.url, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`child did not exit; stdout=${stdout} stderr=${stderr}`));
    }, 60000);
    child.on('exit', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr });
    });
  });
}

const CHILD_CONFIG = `{ clientId: 'test-client', clientSecret: 'test-secret', expectedScopes: ['${h.SCOPE}'],
  authUrl: process.env.FAKE_URL, groupsUrl: process.env.FAKE_URL, verifyCredentials: false }`;

/** A child checking `tokens` for `rounds` rounds against `specs`: prints its memo's statistics. */
function checkingChild(tokens, specs, rounds) {
  return `
    const assert = require('assert');
    const { TokenChecker, resultMemo } = require(${INDEX});
    const tokens = ${JSON.stringify(tokens)};
    const specs = ${JSON.stringify(specs)};
    const c = new TokenChecker(${CHILD_CONFIG});
    (async () => {
      let maxBytes = 0;
      for (let r = 0; r < ${rounds}; r++) {
        const order = r % 2 ? [...tokens].reverse() : tokens;
        const states = await Promise.all(order.map((t) => c.check(t)));
        states.forEach((s, i) => {
          const spec = specs[order[i]];
          assert.equal(s.name, spec.name);
          assert.equal(s.username, spec.username);
          assert.equal(s.email, spec.email);
          assert.equal(s.sub, spec.sub);
          assert.deepEqual(s.identities, spec.identity_set);
          assert.deepEqual(s.principals, spec.identity_set.map((i) => 'urn:globus:auth:identity:' + i));
        });
        maxBytes = Math.max(maxBytes, resultMemo().processBytes);
      }
      console.log(JSON.stringify({ ...resultMemo(), maxBytes }));
      c.close();
    })().catch((e) => { console.error(e); process.exit(1); });
  `;
}

describe('the byte bound', () => {
  let users;
  before(async () => {
    // non-ASCII, escapes and a NUL in every user, so every entry is made through the UTF-8 path
    users = await addUsers(120, 'memo-bound', {});
    for (const [i, t] of users.tokens.entries()) {
      users.specs[t].name = `Ünïcødé "${i}" \\ 😀 \u0000 ${'n'.repeat(i % 7)}`;
      users.specs[t].email = `é${i}@exämple.org`;
    }
    await fake.addTokens(users.specs);
  });

  it('a small TOKENCHECKER_MEMO_BYTES holds what fits, never more, and answers right', async () => {
    const limit = 8000; // a dozen or so entries
    const r = await runChild(checkingChild(users.tokens, users.specs, 30), { TOKENCHECKER_MEMO_BYTES: String(limit) });
    assert.equal(r.status, 0, r.stderr);
    const m = JSON.parse(r.stdout);
    assert.equal(m.limitBytes, limit);
    assert.ok(m.maxBytes <= limit, `held ${m.maxBytes} > ${limit}`);
    assert.ok(m.entries > 0 && m.entries < 120, `entries ${m.entries}`);
    assert.ok(m.entries * m.entryOverhead < limit);
    assert.ok(m.bytes === m.processBytes && m.bytes <= limit);
    // full, it admits a miss one time in 16: the held part stays useful (no churn to 0 hits)
    assert.ok(m.hits > 0, `hits ${m.hits}`);
    assert.ok(m.evictions < m.misses, `evictions ${m.evictions}, misses ${m.misses}`);
    assert.ok(m.refused > 0);
  });

  it('an entry larger than the whole bound is never kept; 0 turns the memo off', async () => {
    for (const limit of ['0', '100']) {
      const r = await runChild(checkingChild(users.tokens.slice(0, 20), users.specs, 3), { TOKENCHECKER_MEMO_BYTES: limit });
      assert.equal(r.status, 0, r.stderr);
      const m = JSON.parse(r.stdout);
      assert.equal(m.limitBytes, Number(limit));
      assert.equal(m.entries, 0);
      assert.equal(m.maxBytes, 0);
      assert.equal(m.hits, 0);
    }
  });

  it('a working set within a large bound always hits after its first round', async () => {
    const r = await runChild(checkingChild(users.tokens, users.specs, 4), { TOKENCHECKER_MEMO_BYTES: String(1 << 20) });
    assert.equal(r.status, 0, r.stderr);
    const m = JSON.parse(r.stdout);
    assert.equal(m.entries, 120);
    assert.equal(m.misses, 120);
    assert.equal(m.hits, 360);
    assert.equal(m.evictions, 0);
  });

  it('with more users than a full memo holds, results die young (no pretenured templates or states)', async () => {
    // V8 pretenures an object literal's allocation site once most of its objects survive young
    // collections. Were the memo to keep the templates makeTemplate makes (or were AuthStates
    // object literals, alive in a batch awaited together), every later one would be made in the
    // old generation: ~300 bytes of old space per check here, and 100,000 users in turn 25%
    // slower. The memo keeps its own copies, and AuthStates come from constructors.
    const n = 20000;
    const { tokens } = await addUsers(n, 'memo-young');
    const file = path.join(require('os').tmpdir(), `tc-memo-young-${process.pid}.json`);
    require('fs').writeFileSync(file, JSON.stringify(tokens));
    try {
      const r = await runChild(`
        const v8 = require('v8');
        const { TokenChecker, resultMemo } = require(${INDEX});
        const tokens = JSON.parse(require('fs').readFileSync(process.env.TOKENS_FILE, 'utf8'));
        const c = new TokenChecker(${CHILD_CONFIG});
        const oldSpace = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'old_space').space_used_size;
        (async () => {
          // The first round's results are held until it ends (as a service holds a request's):
          // most of the objects made meanwhile survive young collections.
          let held = [];
          for (let i = 0; i < tokens.length; i += 500) held.push(await c.checkMany(tokens.slice(i, i + 500)));
          held = null;
          let grown = 0, checks = 0;
          for (let round = 0; round < 10; round++) {
            for (let i = 0; i < tokens.length; i += 1000) {
              const before = oldSpace();
              const states = await Promise.all(tokens.slice(i, i + 1000).map((t) => c.check(t)));
              if (states.some((s) => s.cache.source !== 'memory')) throw new Error('not cached');
              await new Promise((res) => setImmediate(res));
              grown += Math.max(0, oldSpace() - before); // a major collection shrinks it: not counted
              checks += states.length;
            }
          }
          console.log(JSON.stringify({ ...resultMemo(), perCheck: grown / checks }));
          c.close();
        })().catch((e) => { console.error(e); process.exit(1); });
      `, { TOKENCHECKER_MEMO_BYTES: String(4 << 20), TOKENS_FILE: file });
      assert.equal(r.status, 0, r.stderr);
      const m = JSON.parse(r.stdout);
      assert.ok(m.entries > 1000 && m.entries < n / 2, `entries ${m.entries}`); // full
      assert.ok(m.hits > 0 && m.refused > 0);
      // ~20 bytes per check: the templates admitted (one miss in 16) grow the old generation
      assert.ok(m.perCheck < 120, `old space grew ${m.perCheck.toFixed(0)} bytes per check`);
    } finally {
      require('fs').rmSync(file, { force: true });
    }
  });

  it('an unreadable TOKENCHECKER_MEMO_BYTES fails at require time', async () => {
    for (const bad of ['16MiB', '-1', '1e6', ' 12']) {
      const r = await runChild(`
        try { require(${INDEX}); console.log('loaded'); } catch (e) { console.log(e.code + ' ' + e.message); }
      `, { TOKENCHECKER_MEMO_BYTES: bad });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^TC_INVALID_CONFIG TOKENCHECKER_MEMO_BYTES/, bad);
    }
  });
});

// ---- workers: each thread has its own memo, all of them one byte budget -------------------------

describe('the answer memo in workers', () => {
  it('workers have their own memo within the process\'s budget, and exit or are terminated with it full', async () => {
    const { tokens } = await addUsers(40, 'memo-worker');
    const r = await runChild(`
      const { Worker } = require('worker_threads');
      const { resultMemo } = require(${INDEX});
      const src = ${JSON.stringify(`
        const { parentPort, workerData } = require('worker_threads');
        const { TokenChecker, resultMemo } = require(${INDEX});
        const c = new TokenChecker(workerData.config);
        (async () => {
          for (let r = 0; r < 3; r++) await Promise.all(workerData.tokens.map((t) => c.check(t)));
          parentPort.postMessage(JSON.stringify(resultMemo()));
          if (workerData.keep) setInterval(() => c.check(workerData.tokens[0]), 1);
        })();
      `)};
      const config = ${CHILD_CONFIG};
      const run = (keep) => new Promise((resolve) => {
        const w = new Worker(src, { eval: true, workerData: { config, tokens: ${JSON.stringify(tokens)}, keep } });
        w.on('message', async (m) => {
          const memo = JSON.parse(m);
          console.log('worker entries=' + memo.entries + ' hits=' + memo.hits + ' process=' + (memo.processBytes === memo.bytes));
          if (keep) await w.terminate();
          else await new Promise((r) => w.once('exit', r));
          resolve();
        });
      });
      (async () => {
        await run(false);
        console.log('after exit process=' + resultMemo().processBytes);
        await run(true);
        global.gc();
        console.log('main entries=' + resultMemo().entries + ' process=' + resultMemo().processBytes);
      })();
    `, {}, ['--expose-gc']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.signal, null);
    assert.match(r.stdout, /worker entries=40 hits=80 process=true/);
    assert.match(r.stdout, /after exit process=0/, 'a worker\'s memo leaves the budget with it');
    assert.match(r.stdout, /main entries=0 process=0/);
  });
});
