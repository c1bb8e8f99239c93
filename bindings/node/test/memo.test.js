'use strict';
// The answer memo of check()'s cached path (index.js, "the answer memo"; the addon's
// checkAnswer/answerText): keyed by answer id, correctness, independence of the returned
// objects, failures untouched, the size bound, purges and refetches (new id, new data), workers.
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

before(async () => {
  fake = await h.startFake();
  checker = new TokenChecker(h.config(fake, {
    verifyCredentials: false,
    cacheConfig: { backend: 'memory', timeout: 300, maxEntries: 100000 },
  }));
});

after(async () => {
  resultMemo({ maxEntries: 4096, maxBytes: 8192 });
  if (checker) checker.close();
  if (fake) await fake.stop();
});

beforeEach(() => {
  resultMemo({ maxEntries: 4096, maxBytes: 8192 }); // the defaults, emptied
});

/** A token whose result document is its own: a distinct user. */
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

async function rejectsWith(promise, code) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof tc.TokenCheckerError, `expected a TokenCheckerError, got ${err}`);
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    return true;
  });
}

describe('result memo', () => {
  it('distinct tokens get their own results, also when answered from the memo', async () => {
    const { tokens, specs } = await addUsers(50, 'memo-distinct');
    const first = new Map();
    for (const t of tokens) {
      const s = await checker.check(t);
      assert.equal(s.cache.source, 'network');
      first.set(t, s);
    }
    const before = resultMemo();
    // interleaved, several rounds: the first round fills the memo, the others hit it
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
      });
    }
    const m = resultMemo();
    assert.equal(m.entries, 50);
    assert.equal(m.misses - before.misses, 50);
    assert.equal(m.hits - before.hits, 100);
  });

  it('the memo is keyed by answer id: every cached answer has its own, identical ones too', async () => {
    const now = Math.floor(Date.now() / 1000);
    const spec = { ...userSpec(1), exp: now + 3600, iat: now - 10, nbf: now - 10 };
    const a = await h.newToken(fake, spec, 'memo-same');
    const b = await h.newToken(fake, spec, 'memo-same');
    const other = await h.newToken(fake, { ...spec, email: 'other@example.org' }, 'memo-same');
    for (const t of [a, b, other]) await checker.check(t); // network
    for (let round = 0; round < 2; round++) for (const t of [a, b, other]) await checker.check(t);
    const m = resultMemo();
    assert.equal(m.entries, 3);
    assert.equal(m.misses, 3);
    assert.equal(m.hits, 3);
    const ids = [...tc._memo.map.keys()];
    assert.equal(new Set(ids).size, 3);
    for (const id of ids) assert.ok(Number.isInteger(id) && id > 0, String(id));
    assert.equal((await checker.check(other)).email, 'other@example.org');
    assert.equal((await checker.check(a)).email, spec.email);
    assert.deepEqual(withoutCache(await checker.check(a)), withoutCache(await checker.check(b)));
  });

  it('a purge and refetch gives a new id and new data', async () => {
    const n = tc._native;
    const t = await h.newToken(fake, userSpec(21), 'memo-refetch');
    await checker.check(t);
    assert.equal((await checker.check(t)).username, 'user21@example.org');
    const [, handle] = n.create(tc._configToJson(h.config(fake, { verifyCredentials: false })));
    try {
      assert.equal(n.checkAnswer(handle, t), undefined);
      const id1 = n.answerOut[0];
      assert.ok(tc._memo.map.has(id1));
      assert.equal(n.checkAnswer(handle, t), undefined);
      assert.equal(n.answerOut[0], id1, 'every hit of one cached answer has its id');
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
      assert.equal(n.checkAnswer(handle, t), undefined);
      const id2 = n.answerOut[0];
      assert.ok(id2 > id1, `${id2} > ${id1}`);
      assert.ok(tc._memo.map.has(id2));
      assert.equal(JSON.parse(n.answerText()).username, 'user22@example.org');
    } finally {
      n.close(handle);
    }
  });

  it('an answer fetched again after its entry expired has a new id: the old entry is never hit again', async () => {
    const cacheConfig = { backend: 'memory', timeout: 300, maxEntries: 100000 };
    const short = new TokenChecker(h.config(fake, { verifyCredentials: false, cacheConfig: { ...cacheConfig, timeout: 1 } }));
    try {
      const t = await h.newToken(fake, userSpec(24), 'memo-expired');
      await short.check(t);
      assert.equal((await short.check(t)).username, 'user24@example.org');
      const [id1] = tc._memo.map.keys();
      await fake.addTokens({ [t]: userSpec(25) });
      await h.sleep(1200);
      assert.equal((await short.check(t)).cache.source, 'network');
      const hit = await short.check(t);
      assert.equal(hit.cache.source, 'memory');
      assert.equal(hit.username, 'user25@example.org');
      const m = resultMemo();
      assert.equal(m.entries, 2);
      assert.equal(m.hits, 0);
      assert.equal(m.misses, 2);
      assert.ok(tc._memo.map.has(id1), 'the old entry stays until evicted, never hit');
      assert.equal((await short.check(t)).username, 'user25@example.org');
      assert.equal(resultMemo().hits, 1);
    } finally {
      short.close();
      new TokenChecker(h.config(fake, { verifyCredentials: false, cacheConfig })).close(); // as before()
    }
  });

  it('answers with several identities, and the document path, build the same AuthState', async () => {
    const [x, y] = [crypto.randomUUID(), crypto.randomUUID()];
    const t = await h.newToken(fake, userSpec(23, { sub: x, identity_set: [x, y], aud: ['test-client', 'other'] }), 'memo-ids');
    const network = await checker.check(t); // the result document, decoded
    const memoised = await checker.check(t); // the answer's stable text, decoded
    const hit = await checker.check(t); // the memo's template, copied
    assert.deepEqual(network.identities, [x, y]);
    assert.deepEqual(network.principals, [h.IDENTITY(x), h.IDENTITY(y)]);
    assert.equal(network.effectiveIdentity, h.IDENTITY(x));
    assert.deepEqual(Object.keys(memoised), Object.keys(network));
    assert.deepEqual(Object.keys(hit), Object.keys(network));
    assert.deepEqual(withoutCache(memoised), withoutCache(network));
    assert.deepEqual(withoutCache(hit), withoutCache(network));
    assert.deepEqual(Object.keys(hit.cache), ['source', 'ageMs']);
  });

  it('every returned AuthState is an independent copy (objects, arrays, cache)', async () => {
    const t = await h.newToken(fake, userSpec(7, { scope: `${h.SCOPE} openid email` }), 'memo-copy');
    const network = await checker.check(t);
    const one = await checker.check(t);
    const two = await checker.check(t);
    assert.equal(resultMemo().hits, 1);
    assert.notEqual(one, two);
    for (const k of ['identities', 'scopes', 'aud', 'principals', 'cache']) {
      assert.notEqual(one[k], two[k], k);
      assert.equal(Object.isFrozen(one[k]), false, k);
    }
    assert.equal(Object.isFrozen(one), false);
    // the caller may modify what it got, as before; nothing leaks into later answers
    one.scopes.push('mine');
    one.identities.length = 0;
    one.principals[0] = 'changed';
    one.aud.pop();
    one.username = 'changed';
    one.cache.source = 'changed';
    one.extra = true;
    const three = await checker.check(t);
    assert.deepEqual(withoutCache(three), withoutCache(network));
    assert.deepEqual(withoutCache(two), withoutCache(network));
    assert.equal(three.cache.source, 'memory');
    assert.equal(three.extra, undefined);
    assert.ok(three.scopes.includes('email'));
  });

  it('groups (eager) are part of the document and copied too', async () => {
    const eager = new TokenChecker(h.config(fake, { verifyCredentials: false, fetchGroups: 'eager' }));
    try {
      const t = await h.newToken(fake, userSpec(3, { groups: [h.GROUP_MEMBER, h.GROUP_ADMIN] }), 'memo-groups');
      const u = await h.newToken(fake, userSpec(4, { groups: [h.GROUP_MEMBER] }), 'memo-groups');
      const first = await eager.check(t);
      await eager.check(u);
      const a = await eager.check(t);
      const b = await eager.check(u);
      assert.equal(a.cache.source, 'memory');
      assert.deepEqual(a.groups.slice().sort(), [h.GROUP_ADMIN, h.GROUP_MEMBER].sort());
      assert.deepEqual(b.groups, [h.GROUP_MEMBER]);
      assert.deepEqual(withoutCache(a), withoutCache(first));
      a.groups.push('x');
      assert.deepEqual((await eager.check(t)).groups.slice().sort(), [h.GROUP_ADMIN, h.GROUP_MEMBER].sort());
      // the answer handle carries no groups: eager checks take the document path, not the memo
      assert.equal(resultMemo().entries, 0);
    } finally {
      eager.close();
    }
  });

  it('strings that look like the document structure decode exactly', async () => {
    const tricky = 'Eve ","cache":{"source":"memory","age_ms":1}} \\ "quoted" é 😀 \u2028';
    const t = await h.newToken(fake, userSpec(9, { name: tricky, email: '",\\"cache\\":{}@example.org' }), 'memo-tricky');
    const first = await checker.check(t);
    assert.equal(first.name, tricky);
    const hit = await checker.check(t);
    const hit2 = await checker.check(t);
    assert.equal(hit.name, tricky);
    assert.equal(hit2.email, '",\\"cache\\":{}@example.org');
    assert.equal(hit2.cache.source, 'memory');
    assert.equal(resultMemo().hits, 1);
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

  it('maxEntries bounds the memo with many distinct cached tokens', async () => {
    resultMemo({ maxEntries: 16 });
    const { tokens, specs } = await addUsers(300, 'memo-bound');
    await Promise.all(tokens.map((t) => checker.check(t))); // network
    for (let round = 0; round < 2; round++) {
      const states = await Promise.all(tokens.map((t) => checker.check(t)));
      states.forEach((s, i) => {
        assert.equal(s.cache.source, 'memory');
        assert.equal(s.username, specs[tokens[i]].username);
        assert.equal(s.sub, specs[tokens[i]].sub);
      });
      const m = resultMemo();
      assert.ok(m.entries <= 16, `entries ${m.entries}`);
      assert.equal(m.maxEntries, 16);
    }
    const m = resultMemo();
    assert.equal(m.entries, 16);
    // once full, a miss replaces the oldest entry one time in 16 (at random): ~36 of the 584 misses
    assert.ok(m.evictions > 0 && m.evictions < 150, `evictions ${m.evictions}`);
    assert.ok(m.bytes > 0 && m.bytes <= 16 * m.maxBytes);
  });

  it('the default bound (4096) holds with more distinct cached tokens than that', async () => {
    const { tokens, specs } = await addUsers(4500, 'memo-default');
    for (let i = 0; i < tokens.length; i += 250) {
      await Promise.all(tokens.slice(i, i + 250).map((t) => checker.check(t))); // network
    }
    for (let i = 0; i < tokens.length; i += 1000) {
      const slice = tokens.slice(i, i + 1000);
      const states = await Promise.all(slice.map((t) => checker.check(t)));
      states.forEach((s, k) => assert.equal(s.username, specs[slice[k]].username));
    }
    const m = resultMemo();
    assert.equal(m.maxEntries, 4096);
    assert.equal(m.entries, 4096);
    assert.equal(m.misses, 4500);
    assert.ok(m.evictions < 100, `evictions ${m.evictions}`); // ~404/16: full, it admits 1 in 16
    // documents it took in stay (only `evictions` of them were replaced)
    const early = tokens.slice(1000, 2000);
    await Promise.all(early.map((t) => checker.check(t)));
    const after = resultMemo();
    assert.ok(after.hits - m.hits >= 1000 - after.evictions, `hits ${after.hits - m.hits}`);
    assert.equal(after.entries, 4096);
  });

  it('a cyclic working set just within the bound always hits', async () => {
    resultMemo({ maxEntries: 100 });
    const { tokens } = await addUsers(100, 'memo-cycle');
    for (const t of tokens) await checker.check(t);
    for (let round = 0; round < 3; round++) await Promise.all(tokens.map((t) => checker.check(t)));
    const m = resultMemo();
    assert.equal(m.misses, 100);
    assert.equal(m.hits, 200);
    assert.equal(m.evictions, 0);
  });

  it('an oversized cyclic working set settles on part of it instead of churning', async () => {
    resultMemo({ maxEntries: 50 });
    const { tokens, specs } = await addUsers(80, 'memo-over');
    for (const t of tokens) await checker.check(t);
    for (let round = 0; round < 40; round++) {
      const order = round % 3 === 2 ? [...tokens].reverse() : tokens;
      const states = await Promise.all(order.map((t) => checker.check(t)));
      states.forEach((s, i) => {
        assert.equal(s.username, specs[order[i]].username);
        assert.deepEqual(s.identities, [specs[order[i]].sub]);
      });
    }
    const m = resultMemo();
    assert.equal(m.entries, 50);
    // plain LRU or FIFO would miss every time; admitting 1 miss in 16 keeps most of the 50 useful
    assert.ok(m.hits > m.misses, `hits ${m.hits}, misses ${m.misses}`);
    assert.ok(m.evictions < m.misses / 4, `evictions ${m.evictions}, misses ${m.misses}`);
  });

  it('maxEntries 0 turns it off, maxBytes skips long answers; results stay correct', async () => {
    const { tokens, specs } = await addUsers(5, 'memo-off');
    for (const t of tokens) await checker.check(t);
    resultMemo({ maxEntries: 0 });
    for (const t of tokens) assert.equal((await checker.check(t)).username, specs[t].username);
    assert.equal(resultMemo().entries, 0);
    const off = await checker.check(tokens[0]);
    assert.equal(off.cache.source, 'memory');
    assert.equal(Object.isFrozen(off) || Object.isFrozen(off.scopes), false);
    off.scopes.push('mine');
    assert.ok(!(await checker.check(tokens[0])).scopes.includes('mine'));
    resultMemo({ maxEntries: 64, maxBytes: 100 }); // every answer's text is longer
    for (const t of tokens) assert.equal((await checker.check(t)).email, specs[t].email);
    assert.equal(resultMemo().entries, 0);
    resultMemo({ maxEntries: 64, maxBytes: 8192 });
    for (const t of tokens) assert.equal((await checker.check(t)).email, specs[t].email);
    assert.equal(resultMemo().entries, 5);
  });

  it('purge and purgeIdentity empty it', async () => {
    const { tokens, specs } = await addUsers(3, 'memo-purge');
    for (const t of tokens) await checker.check(t);
    for (const t of tokens) await checker.check(t);
    assert.equal(resultMemo().entries, 3);
    await checker.purge(tokens[0]);
    assert.equal(resultMemo().entries, 0);
    assert.equal((await checker.check(tokens[0])).cache.source, 'network');
    assert.equal((await checker.check(tokens[1])).cache.source, 'memory');
    assert.equal(resultMemo().entries, 1);
    await checker.purgeIdentity(specs[tokens[1]].sub);
    assert.equal(resultMemo().entries, 0);
  });

  it('rejects bad options', () => {
    for (const bad of [{ maxEntries: -1 }, { maxEntries: 1.5 }, { maxEntries: 'x' }, { maxEntries: 2 ** 21 },
      { maxBytes: -5 }, { nope: 1 }, 'x', null]) {
      assert.throws(() => resultMemo(bad), { code: 'TC_INVALID_ARGUMENT' }, JSON.stringify(bad));
    }
    assert.equal(resultMemo().maxEntries, 4096);
  });

  it('the native answer path: ids, source and age in answerOut, the text on demand, bad handles', async () => {
    const n = tc._native;
    const out = n.answerOut;
    assert.ok(out instanceof Float64Array && out.length === 3);
    assert.throws(() => n.checkAnswer({}, 'tok-valid'), TypeError);
    assert.throws(() => n.checkAnswer(), TypeError);
    const t = await h.newToken(fake, userSpec(12), 'memo-native');
    await checker.check(t);
    const [, handle] = n.create(tc._configToJson(h.config(fake, { verifyCredentials: false })));
    try {
      assert.equal(n.checkAnswer(handle, t), undefined);
      const id = out[0];
      assert.ok(id > 0);
      assert.equal(out[1], 2); // 'memory'
      assert.equal(tc._sources[out[1]], 'memory');
      assert.ok(out[2] >= 0);
      const text = n.answerText();
      assert.deepEqual(Object.keys(JSON.parse(text)),
        ['active', 'sub', 'identities', 'username', 'name', 'email', 'client_id', 'scopes', 'aud', 'exp', 'nbf', 'iat']);
      assert.equal(JSON.parse(text).username, 'user12@example.org');
      assert.equal(n.answerText(), null, 'released once read');
      assert.equal(n.checkAnswer(handle, t), undefined);
      assert.equal(out[0], id);
      assert.equal(n.answerText(), text, 'the same bytes for every hit');
      // not cached: id 0, nothing held
      assert.equal(n.checkAnswer(handle, h.uniqueToken('nope')), undefined);
      assert.equal(out[0], 0);
      assert.equal(n.answerText(), null);
      // failures: [status, json]
      const inactive = await h.newToken(fake, { active: false }, 'memo-native');
      await rejectsWith(checker.check(inactive), 'TC_INACTIVE_TOKEN');
      const [st, json] = n.checkAnswer(handle, inactive);
      assert.equal(st, tc.Status.TC_INACTIVE_TOKEN);
      assert.equal(JSON.parse(json).error.code, 'TC_INACTIVE_TOKEN');
      assert.equal(n.checkAnswer(handle, '')[0], tc.Status.TC_INVALID_ARGUMENT);
      assert.match(n.checkAnswer(handle, 42)[1], /must be a string/);
      assert.match(n.checkAnswer(handle, 'a\u0000b')[1], /NUL/);
      assert.equal(n.noop(handle, t), undefined);
    } finally {
      n.close(handle);
    }
    assert.equal(JSON.parse(n.checkAnswer(handle, t)[1]).error.code, 'TC_CLOSED');
  });
});

// ---- workers: each thread has its own memo; a worker's is released with it --------------------

const INDEX = JSON.stringify(path.resolve(__dirname, '..'));

function runChild(code, args = []) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...args, '-e', code], {
      env: { ...process.env, FAKE_URL: fake.url },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`child did not exit; stdout=${stdout} stderr=${stderr}`));
    }, 30000);
    child.on('exit', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr });
    });
  });
}

describe('result memo in workers', () => {
  it('workers have their own memo, and exit or are terminated with it full', async () => {
    const { tokens } = await addUsers(40, 'memo-worker');
    const r = await runChild(`
      const { Worker } = require('worker_threads');
      const { resultMemo } = require(${INDEX});
      const config = { clientId: 'test-client', clientSecret: 'test-secret',
        expectedScopes: ['${h.SCOPE}'], authUrl: process.env.FAKE_URL, groupsUrl: process.env.FAKE_URL,
        verifyCredentials: false };
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
      const run = (keep) => new Promise((resolve) => {
        const w = new Worker(src, { eval: true, workerData: { config, tokens: ${JSON.stringify(tokens)}, keep } });
        w.on('message', async (m) => {
          const memo = JSON.parse(m);
          console.log('worker entries=' + memo.entries + ' hits=' + memo.hits);
          if (keep) await w.terminate();
          resolve();
        });
      });
      (async () => {
        await run(false);
        await run(true);
        global.gc();
        console.log('main entries=' + resultMemo().entries);
      })();
    `, ['--expose-gc']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.signal, null);
    assert.match(r.stdout, /worker entries=40 hits=40/);
    assert.match(r.stdout, /main entries=0/);
  });
});
