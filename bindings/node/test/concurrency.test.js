'use strict';
// Many checks in flight, event-loop responsiveness, close() under load, and process/worker
// lifetimes, against the real fake Globus server.
const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('child_process');
const path = require('path');

const tc = require('..');
const { TokenChecker } = tc;
const h = require('./helpers');

let fake;
let checker;

before(async () => {
  fake = await h.startFake();
  checker = new TokenChecker(h.config(fake, { maxRetries: 0 }));
});

afterEach(async () => {
  await fake.clearFaults();
});

after(async () => {
  if (checker) checker.close();
  if (fake) await fake.stop();
});

describe('concurrency', () => {
  it('500 concurrent checks of one new token make exactly 1 introspect request', async () => {
    const t = await h.newToken(fake, { username: 'many@example.org' });
    await fake.setFault({ endpoint: 'introspect', latency_ms: 1000 });
    const before = (await fake.counters()).introspect;
    const promises = [];
    for (let i = 0; i < 500; i++) promises.push(checker.check(t));
    // All 500 went async (unless the first answer arrived while this loop ran: then the rest
    // were cache hits on the fast path).
    assert.ok(tc.inFlight() > 0 && tc.inFlight() <= 500, `${tc.inFlight()} in flight`);
    assert.equal(checker.inFlight, tc.inFlight());
    const states = await Promise.all(promises);
    assert.equal((await fake.counters()).introspect - before, 1);
    assert.equal(states.length, 500);
    for (const s of states) assert.equal(s.username, 'many@example.org');
    const sources = new Set(states.map((s) => s.cache.source));
    for (const src of sources) assert.ok(['network', 'coalesced', 'memory'].includes(src), src);
    assert.equal(tc.inFlight(), 0);
    assert.equal(checker.inFlight, 0);
  });

  it('hundreds of distinct checks run at once (not limited by libuv\'s pool)', async () => {
    const N = 200;
    const tokens = [];
    const specs = {};
    for (let i = 0; i < N; i++) {
      const t = h.uniqueToken('par');
      tokens.push(t);
      specs[t] = { username: `u${i}@example.org` };
    }
    await fake.addTokens(specs);
    await fake.reset(); // zero max_concurrent
    await fake.setFault({ endpoint: 'introspect', latency_ms: 500 });
    const started = Date.now();
    const states = await Promise.all(tokens.map((t) => checker.check(t)));
    const elapsed = Date.now() - started;
    states.forEach((s, i) => assert.equal(s.username, `u${i}@example.org`));
    const counters = await fake.counters();
    // Serialised four at a time this would take N / 4 * 500 ms = 25 s.
    assert.ok(elapsed < 15000, `took ${elapsed} ms`);
    assert.ok(counters.max_concurrent.introspect > 20,
      `max concurrent introspections: ${counters.max_concurrent.introspect}`);
  });

  it('the event loop stays responsive while checks wait on a slow server', async (t) => {
    const tokens = [];
    for (let i = 0; i < 50; i++) tokens.push(await h.newToken(fake));
    async function ticking(what) {
      let ticks = 0;
      let last = Date.now();
      let maxGap = 0;
      const timer = setInterval(() => {
        const now = Date.now();
        maxGap = Math.max(maxGap, now - last);
        last = now;
        ticks++;
      }, 20);
      const started = Date.now();
      try {
        await what();
      } finally {
        clearInterval(timer);
      }
      return { ticks, maxGap, elapsed: Date.now() - started };
    }
    // The same timer while merely sleeping: how this (possibly busy) machine schedules us.
    const control = await ticking(() => h.sleep(1000));
    await fake.setFault({ endpoint: 'introspect', latency_ms: 1000 });
    const load = await ticking(() => Promise.all(tokens.map((tok) => checker.check(tok))));
    t.diagnostic(`control: ${JSON.stringify(control)}; checks: ${JSON.stringify(load)}`);
    assert.ok(load.elapsed >= 900, `the checks waited on the server (${load.elapsed} ms)`);
    // ~50 ticks per second at 20 ms; be generous for slow or busy machines.
    const perSecond = (r) => (r.ticks * 1000) / r.elapsed;
    assert.ok(load.ticks >= 10, `only ${load.ticks} ticks in ${load.elapsed} ms`);
    assert.ok(perSecond(load) >= Math.min(15, perSecond(control) / 2),
      `${perSecond(load).toFixed(1)} ticks/s under load vs ${perSecond(control).toFixed(1)} idle`);
  });

  it('close() while checks are in flight: they settle, later calls reject TC_CLOSED', async () => {
    const c = new TokenChecker(h.config(fake, { maxRetries: 0 }));
    const shared = await h.newToken(fake);
    const distinct = [];
    for (let i = 0; i < 20; i++) distinct.push(await h.newToken(fake));
    await fake.setFault({ endpoint: 'introspect', latency_ms: 400 });
    const promises = [];
    for (let i = 0; i < 100; i++) promises.push(c.check(shared));
    for (const t of distinct) promises.push(c.check(t));
    promises.push(c.authorize('tok-bob', [h.IDENTITY(h.BOB_ID)]));
    promises.push(c.dependentToken(distinct[0], h.TRANSFER_SCOPE).catch((e) => e.code));
    promises.push(c.purge(h.uniqueToken('p')));
    assert.ok(c.inFlight > 0);
    c.close();
    c.close();
    await assert.rejects(c.check(shared), { code: 'TC_CLOSED', status: -1 });
    const results = await Promise.allSettled(promises);
    for (const r of results) assert.equal(r.status, 'fulfilled', r.reason && r.reason.message);
    assert.equal(c.inFlight, 0);
    await assert.rejects(c.check(shared), { code: 'TC_CLOSED' });
    // the shared cache still serves other checkers
    assert.equal((await checker.check(shared)).cache.source, 'memory');
  });

  it('the library checker is freed only once closed AND idle', async () => {
    const n = tc._native;
    const t = await h.newToken(fake);
    const [status, handle] = n.create(tc._configToJson(h.config(fake, { verifyCredentials: false })));
    assert.equal(status, 0);
    await fake.setFault({ endpoint: 'introspect', latency_ms: 300 });
    const done = new Promise((resolve) => {
      const answer = n.check(handle, t, (st, json) => resolve({ st, json, freed: n.isFreed(handle) }));
      assert.equal(answer, undefined, 'the check went async');
    });
    n.close(handle);
    assert.equal(n.isFreed(handle), false, 'not freed while a check is in flight');
    assert.equal(n.inFlight(handle), 1);
    const { st, json, freed } = await done;
    assert.equal(st, 0, json);
    assert.equal(JSON.parse(json).active, true);
    assert.equal(freed, true, 'freed once the last call was delivered');
    assert.equal(n.inFlight(handle), 0);

    const [, open] = n.create(tc._configToJson(h.config(fake, { verifyCredentials: false })));
    const t2 = await h.newToken(fake);
    await new Promise((resolve) => n.check(open, t2, resolve));
    assert.equal(n.isFreed(open), false, 'an open checker stays');
    n.close(open);
    assert.equal(n.isFreed(open), true);
  });
});

// ---- process and worker lifetimes, in child processes ------------------------------------------

const INDEX = JSON.stringify(path.resolve(__dirname, '..'));

function runChild(code, { args = [], timeoutMs = 20000 } = {}) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
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
      reject(new Error(`child did not exit in ${timeoutMs} ms; stdout=${stdout} stderr=${stderr}`));
    }, timeoutMs);
    child.on('exit', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr, elapsed: Date.now() - started });
    });
  });
}

const CHILD_PRELUDE = `
const { TokenChecker } = require(${INDEX});
const config = { clientId: 'test-client', clientSecret: 'test-secret',
  expectedScopes: ['${h.SCOPE}'], authUrl: process.env.FAKE_URL, groupsUrl: process.env.FAKE_URL,
  verifyCredentials: false };
`;

describe('lifetimes', () => {
  it('the process stays alive while a check is pending, and exits when none is', async () => {
    const t = await h.newToken(fake, { username: 'alive@example.org' });
    await fake.setFault({ endpoint: 'introspect', latency_ms: 700 });
    const r = await runChild(`${CHILD_PRELUDE}
      const c = new TokenChecker(config);
      c.check(${JSON.stringify(t)}).then((s) => console.log('user=' + s.username));
    `);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /user=alive@example\.org/);
    assert.ok(r.elapsed >= 600, `exited after ${r.elapsed} ms, before the answer`);
    assert.ok(r.elapsed < 10000);
  });

  it('an idle process with an open checker exits on its own', async () => {
    const r = await runChild(`${CHILD_PRELUDE}
      const c = new TokenChecker(config);
      c.check('tok-valid').then((s) => c.check('tok-valid')).then((s) => console.log('source=' + s.cache.source));
    `);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /source=memory/);
  });

  it('garbage-collected checkers with work in flight: no crash, promises settle', async () => {
    const tokens = [];
    for (let i = 0; i < 10; i++) tokens.push(await h.newToken(fake));
    await fake.setFault({ endpoint: 'introspect', latency_ms: 300 });
    const r = await runChild(`${CHILD_PRELUDE}
      const tokens = ${JSON.stringify(tokens)};
      let promises = [];
      (function () {
        const c = new TokenChecker(config);
        for (const t of tokens) promises.push(c.check(t));
      })();
      for (let i = 0; i < 20; i++) new TokenChecker(config); // never closed
      global.gc();
      Promise.all(promises).then((states) => {
        global.gc();
        console.log('settled=' + states.length);
        setTimeout(() => { global.gc(); console.log('done'); }, 50);
      });
    `, { args: ['--expose-gc'] });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /settled=10/);
    assert.match(r.stdout, /done/);
  });

  it('a worker terminated with checks in flight does not crash the process', async () => {
    const tokens = [];
    for (let i = 0; i < 20; i++) tokens.push(await h.newToken(fake));
    await fake.setFault({ endpoint: 'introspect', latency_ms: 500 });
    const r = await runChild(`${CHILD_PRELUDE}
      const { Worker } = require('worker_threads');
      const src = ${JSON.stringify(`
        const { parentPort, workerData } = require('worker_threads');
        const { TokenChecker } = require(${INDEX});
        const c = new TokenChecker(workerData.config);
        for (const t of workerData.tokens) c.check(t).catch(() => {});
        parentPort.postMessage('started ' + c.inFlight);
      `)};
      const w = new Worker(src, { eval: true, workerData: { config, tokens: ${JSON.stringify(tokens)} } });
      w.on('message', async (m) => {
        console.log(m);
        await w.terminate();
        console.log('terminated');
        // the library's callbacks arrive after the worker is gone; then the main thread works on
        const c = new TokenChecker(config);
        setTimeout(async () => {
          const s = await c.check('tok-valid');
          console.log('main ok ' + s.username);
          c.close();
        }, 800);
      });
    `);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /started 20/);
    assert.match(r.stdout, /terminated/);
    assert.match(r.stdout, /main ok alice@example\.org/);
  });

  it('process.exit() with checks in flight exits cleanly', async () => {
    const tokens = [];
    for (let i = 0; i < 20; i++) tokens.push(await h.newToken(fake));
    await fake.setFault({ endpoint: 'introspect', latency_ms: 300 });
    const r = await runChild(`${CHILD_PRELUDE}
      const c = new TokenChecker(config);
      for (const t of ${JSON.stringify(tokens)}) c.check(t);
      setTimeout(() => process.exit(3), 100);
    `);
    assert.equal(r.signal, null, r.stderr);
    assert.equal(r.status, 3, r.stderr);
  });
});
