'use strict';
// Benchmark of the Node binding against the real fake Globus server.
//
//   npm run bench                    # every phase; a table of the goals at the end
//   node bench/bench.js --repeat 5 --json
//   node bench/bench.js --smoke      # small sizes, a few seconds (CI: it runs, it prints)
//
// Options: --hits N (hot-path operations per pass, default 1,000,000), --batch N (tokens per
// batch, default 1000), --repeat N (passes per measured row: the best and the median are
// reported, default 3), --distinct N (default 10,000), --large N (default 100,000), --misses N,
// --concurrency N, --latency MS, --slow N, --skip-async, --json.
//
// Cached phases (the answer path: tc_try_check_answer / tc_try_authorize_answer, the answer memo):
// batches of `batch` operations, two ways each:
//   per call  - `batch` check()/authorize() promises, awaited with Promise.all;
//   batch API - one checkMany()/authorizeMany() call for the batch (one native call).
// The event loop gets a turn (setImmediate) after every batch, as a server handling requests
// would give it. Rows:
//   hot       - one cached token, check and authorize by group;
//   distinct  - cycling over `distinct` and `large` cached tokens of distinct users (all cached:
//               the memory cache holds 300,000 entries for 900 s), and authorize by group over
//               1,000 and `distinct` of them (their groups cached by a first authorize); the
//               rule: allowed principals = one group every user is in;
//   floors    - in the same run, the bare native call (tc_try_check_answer through N-API, no
//               object, no promise) at each size, and a no-op native call per promise: what the
//               library and N-API alone cost on this machine;
//   memory    - the RSS the binding adds per cached token at `large` tokens, in child processes
//               (TOKENCHECKER_MEMO_BYTES is read once per process): each fills the library's
//               cache with every token through the document path (no answer memo), grows V8's
//               young generation as the measured passes will, then measures RSS before and
//               after two passes of the answer path over all tokens. With the memo off the
//               difference is what the library adds when its fields are read (tc_answer_fields,
//               built once per answer); with the memo on (its default bound, or the
//               TOKENCHECKER_MEMO_BYTES of this run), that plus the memo: the binding's share
//               is the difference of the two;
//   eager     - one token of a checker with fetchGroups 'eager' (the document path: JSON.parse).
// Then the async path: cache misses through tc_check_async and the threadsafe function
// (`concurrency` in flight), and many in flight on a slow server (`latency` ms).
// Event-loop delay (perf_hooks.monitorEventLoopDelay, 5 ms resolution) is recorded during every
// phase and reported as the lateness beyond the 5 ms sampling interval.
const { performance, monitorEventLoopDelay } = require('perf_hooks');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');

const tc = require('..');
const { TokenChecker, stats, version, resultMemo, groupPrincipal } = tc;
const h = require('../test/helpers');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = process.argv[i + 1];
  return v === undefined || v.startsWith('--') ? true : Number.isNaN(Number(v)) ? v : Number(v);
}

const SMOKE = arg('smoke', false) === true;
const HITS = arg('hits', SMOKE ? 20000 : 1000000);
const BATCH = arg('batch', 1000);
const REPEAT = arg('repeat', SMOKE ? 1 : 3);
const DISTINCT = arg('distinct', SMOKE ? 2000 : 10000);
const LARGE = arg('large', SMOKE ? 4000 : 100000);
const GROUP_SMALL = Math.min(1000, DISTINCT);
const MISSES = arg('misses', SMOKE ? 200 : 5000);
const CONCURRENCY = arg('concurrency', 200);
const LATENCY = arg('latency', 50);
const SLOW = arg('slow', SMOKE ? 100 : 2000);
const SKIP_ASYNC = arg('skip-async', false) === true;
const JSON_OUT = arg('json', false) === true;

const GOALS = { hot: 2e6, distinct: 1.5e6, group: 1.5e6, bytesPerToken: 512 };
const GROUP = '99999999-9999-4999-8999-999999999999';

// ---- helpers --------------------------------------------------------------------------------

function pct(sorted, p) {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

function summarize(latenciesNs) {
  const a = Float64Array.from(latenciesNs).sort();
  const us = (ns) => Math.round(ns / 10) / 100; // ns -> µs, 2 decimals
  return { p50_us: us(pct(a, 50)), p99_us: us(pct(a, 99)), max_us: us(a[a.length - 1]) };
}

const RESOLUTION_MS = 5;

// The histogram records whole timer intervals (>= the resolution); report the delay beyond it.
function loopDelay(hist) {
  const ms = (ns) => Math.max(0, Math.round((ns - RESOLUTION_MS * 1e6) / 1e4) / 100);
  if (hist.count === 0) return { samples: 0, p50_ms: NaN, p99_ms: NaN, max_ms: NaN };
  return { samples: hist.count, p50_ms: ms(hist.percentile(50)), p99_ms: ms(hist.percentile(99)), max_ms: ms(hist.max) };
}

const yieldToLoop = () => new Promise((r) => setImmediate(r));

async function withLoopMonitor(fn) {
  const hist = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  hist.enable();
  try {
    const result = await fn();
    return { ...result, loop: loopDelay(hist) };
  } finally {
    hist.disable();
  }
}

/** Registers `n` users at the fake (each its own identity, in GROUP when `groups`). */
async function addUsers(fake, n, label, groups = false) {
  const tokens = [];
  for (let start = 0; start < n; start += 2000) {
    const specs = {};
    for (let i = start; i < Math.min(n, start + 2000); i++) {
      const t = h.uniqueToken(label);
      const sub = crypto.randomUUID();
      tokens.push(t);
      specs[t] = { sub, identity_set: [sub], username: `user${i}@example.org`, name: `User ${i}`, ...(groups ? { groups: [GROUP] } : {}) };
    }
    await fake.addTokens(specs);
  }
  return tokens;
}

/** Fills the library's cache (and, with a policy, the groups) for every token, 500 at a time. */
async function fill(checker, tokens, policy) {
  for (let i = 0; i < tokens.length; i += 500) {
    const part = tokens.slice(i, i + 500);
    const states = policy ? await checker.authorizeMany(part, policy) : await checker.checkMany(part);
    const bad = states.find((s) => s instanceof Error);
    if (bad) throw bad;
  }
}

/** `fn(token)` for `total` operations cycling over `tokens`, in batches of BATCH awaited with Promise.all. */
async function perCall(tokens, total, fn) {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let done = 0;
  let k = 0;
  while (done < total) {
    const batch = [];
    for (let i = 0; i < BATCH && done + i < total; i++) {
      batch.push(fn(tokens[k]));
      if (++k === tokens.length) k = 0;
    }
    const states = await Promise.all(batch);
    if (states[0].cache.source !== 'memory') throw new Error(`expected a cache hit, got ${states[0].cache.source}`);
    done += states.length;
    await yieldToLoop();
  }
  return rate(done, t0, cpu0);
}

/** `fn(tokens)` (checkMany/authorizeMany) for `total` tokens cycling over `tokens`, BATCH at a time. */
async function batched(tokens, total, fn) {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let done = 0;
  let k = 0;
  while (done < total) {
    const n = Math.min(BATCH, total - done);
    const batch = new Array(n);
    for (let i = 0; i < n; i++) {
      batch[i] = tokens[k];
      if (++k === tokens.length) k = 0;
    }
    const states = await fn(batch);
    if (!(states[0] && states[0].cache) || states[0].cache.source !== 'memory') {
      throw new Error(`expected a cache hit, got ${states[0] && (states[0].cache ? states[0].cache.source : states[0].message)}`);
    }
    done += n;
    await yieldToLoop();
  }
  return rate(done, t0, cpu0);
}

function rate(done, t0, cpu0) {
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { ops: done, per_sec: Math.round(done / secs), cpu_per_sec: Math.round(done / ((cpu.user + cpu.system) / 1e6)) };
}

/** `measure()` REPEAT times, with the loop monitored: {best, median, runs, loop (of the best)}. */
async function repeated(measure) {
  const runs = [];
  for (let r = 0; r < REPEAT; r++) runs.push(await withLoopMonitor(measure));
  const sorted = [...runs].sort((a, b) => b.per_sec - a.per_sec);
  const memo = resultMemo();
  return {
    best: sorted[0].per_sec,
    median: sorted[Math.floor(sorted.length / 2)].per_sec,
    cpu_per_sec: sorted[0].cpu_per_sec,
    runs: runs.map((x) => x.per_sec),
    loop: sorted[0].loop,
    memo: { entries: memo.entries, hits: memo.hits, misses: memo.misses },
  };
}

/**
 * The bare library call through N-API (tc_try_check_answer, or tc_try_authorize_answer with the
 * policy; the answer released at once: no memo, no object, no promise) cycling over `tokens`:
 * ns per call (best of REPEAT).
 */
function bareNative(raw, tokens, n, policyHandle = null) {
  const native = tc._native;
  let best = Infinity;
  for (let r = 0; r < REPEAT; r++) {
    let k = 0;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      if (native.probe(raw, policyHandle, tokens[k]) !== 0) throw new Error('expected a cached answer');
      if (++k === tokens.length) k = 0;
    }
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / n);
  }
  return Math.round(best);
}

/** Runs `fn(i)` for i in [0, n) with at most `c` in flight; returns per-call latencies (ns). */
async function pool(n, c, fn) {
  const lat = new Float64Array(n);
  let next = 0;
  let maxInFlight = 0;
  let inFlight = 0;
  async function worker() {
    while (next < n) {
      const i = next++;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      const t0 = process.hrtime.bigint();
      await fn(i);
      lat[i] = Number(process.hrtime.bigint() - t0);
      inFlight--;
    }
  }
  await Promise.all(Array.from({ length: Math.min(c, n) }, worker));
  return { lat, maxInFlight };
}

// ---- the memory child -----------------------------------------------------------------------

/**
 * In a child (`--memory-child <tokens file>`, FAKE_URL): the RSS delta of two passes of the answer
 * path over every token, the library's cache filled before (see the top).
 */
async function memoryChild(file) {
  const v8 = require('v8');
  const vm = require('vm');
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  const settle = async () => {
    for (let i = 0; i < 4; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const tokens = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
  const fake = { url: process.env.FAKE_URL };
  const checker = new TokenChecker(h.config(fake, {
    verifyCredentials: false, cacheConfig: { backend: 'memory', timeout: 900, maxEntries: 300000 },
  }));
  const native = tc._native;
  const raw = native.create(tc._configToJson(h.config(fake, { verifyCredentials: false })))[1];
  // the library's cache, through the document path: no answer is read through its fields yet
  for (let i = 0; i < tokens.length; i += 500) {
    await Promise.all(tokens.slice(i, i + 500).map((t) => new Promise((resolve, reject) => {
      const answer = native.checkAsync(raw, t, (st, json) => (st === 0 ? resolve() : reject(new Error(json))));
      if (answer !== undefined) reject(new Error(answer[1]));
    })));
  }
  // V8's young generation grows with allocation (up to its bound, once): as the passes below
  // would make it grow, grow it first, on one token
  const hot = tokens[0];
  for (let r = 0; r < 300; r++) await checker.checkMany(new Array(1000).fill(hot));
  tc._memoClear();
  await settle();
  const rss0 = process.memoryUsage().rss;
  const heap0 = process.memoryUsage().heapUsed;
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < tokens.length; i += 1000) {
      const states = await checker.checkMany(tokens.slice(i, i + 1000));
      if (states.some((s) => s instanceof Error)) throw states.find((s) => s instanceof Error);
    }
  }
  await settle();
  const mu = process.memoryUsage();
  const memo = resultMemo();
  native.close(raw);
  checker.close();
  console.log(JSON.stringify({
    tokens: tokens.length, rss_delta: mu.rss - rss0, heap_delta: mu.heapUsed - heap0,
    memo_limit: memo.limitBytes, memo_entries: memo.entries, memo_bytes: memo.bytes,
  }));
}

function runMemoryChild(file, fakeUrl, memoBytes) {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, FAKE_URL: fakeUrl };
    if (memoBytes !== undefined) env.TOKENCHECKER_MEMO_BYTES = String(memoBytes);
    const child = spawn(process.execPath, [__filename, '--memory-child', file], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`memory child exited with ${code}`));
      else resolve(JSON.parse(out.trim().split('\n').pop()));
    });
  });
}

// ---- main -----------------------------------------------------------------------------------

async function main() {
  const fake = await h.startFake();
  const checker = new TokenChecker(h.config(fake, {
    verifyCredentials: false, cacheConfig: { backend: 'memory', timeout: 900, maxEntries: 300000 },
  }));
  const policy = checker.policy([groupPrincipal(GROUP)]);
  const allowed = [groupPrincipal(GROUP)];
  const native = tc._native;
  const raw = native.create(tc._configToJson(h.config(fake, { verifyCredentials: false })))[1];
  const policyHandle = Object.getOwnPropertySymbols(policy).map((s) => policy[s]).find((v) => typeof v === 'object' && !Array.isArray(v));
  const results = {
    version: version(), node: process.version, cpus: os.availableParallelism?.() ?? os.cpus().length,
    batch: BATCH, repeat: REPEAT, memo_limit_bytes: resultMemo().limitBytes,
  };
  try {
    results.idle_baseline = await withLoopMonitor(() => new Promise((r) => setTimeout(() => r({}), SMOKE ? 200 : 1000)));

    // ---- hot ----------------------------------------------------------------------------
    const [hot] = await addUsers(fake, 1, 'hot', true);
    await checker.authorize(hot, policy);
    await checker.check(hot);
    for (let i = 0; i < 5000; i++) await checker.check(hot); // warm up
    results.hot_sequential = await withLoopMonitor(async () => {
      const n = Math.min(HITS, 300000);
      const lat = new Float64Array(n);
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        if (i % 100 === 0) await yieldToLoop();
        const s = process.hrtime.bigint();
        const state = await checker.check(hot);
        lat[i] = Number(process.hrtime.bigint() - s);
        if (state.cache.source !== 'memory') throw new Error(`expected a cache hit, got ${state.cache.source}`);
      }
      return { checks: n, per_sec: Math.round(n / ((performance.now() - t0) / 1000)), ...summarize(lat) };
    });
    const hotTokens = [hot];
    results.hot_check = await repeated(() => perCall(hotTokens, HITS, (t) => checker.check(t)));
    results.hot_check_many = await repeated(() => batched(hotTokens, HITS, (b) => checker.checkMany(b)));
    results.hot_authorize = await repeated(() => perCall(hotTokens, HITS, (t) => checker.authorize(t, allowed)));
    results.hot_authorize_many = await repeated(() => batched(hotTokens, HITS, (b) => checker.authorizeMany(b, policy)));
    results.floor_hot_ns = bareNative(raw, hotTokens, Math.min(HITS, 1000000));
    results.floor_hot_authorize_ns = bareNative(raw, hotTokens, Math.min(HITS, 1000000), policyHandle);
    results.noop_per_call = await repeated(async () => {
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      for (let done = 0; done < HITS; done += BATCH) {
        const batch = [];
        for (let i = 0; i < BATCH; i++) batch.push(Promise.resolve(native.noop(raw, hot)));
        await Promise.all(batch);
        await yieldToLoop();
      }
      return rate(HITS, t0, cpu0);
    });

    // ---- distinct users, all cached -----------------------------------------------------
    const users = await addUsers(fake, DISTINCT, 'distinct', true);
    let t0 = performance.now();
    await fill(checker, users, policy); // their answers and groups
    results.fill_distinct_s = Math.round(performance.now() - t0) / 1000;
    const cycle = (n) => Math.max(HITS / 4, 3 * n);
    results.distinct_check = await repeated(() => perCall(users, cycle(DISTINCT), (t) => checker.check(t)));
    results.distinct_check_many = await repeated(() => batched(users, cycle(DISTINCT), (b) => checker.checkMany(b)));
    results.floor_distinct_ns = bareNative(raw, users, cycle(DISTINCT));
    const small = users.slice(0, GROUP_SMALL);
    results.group_small = await repeated(() => perCall(small, cycle(GROUP_SMALL), (t) => checker.authorize(t, allowed)));
    results.group_small_many = await repeated(() => batched(small, cycle(GROUP_SMALL), (b) => checker.authorizeMany(b, policy)));
    results.floor_group_small_ns = bareNative(raw, small, cycle(GROUP_SMALL), policyHandle);
    results.group_distinct = await repeated(() => perCall(users, cycle(DISTINCT), (t) => checker.authorize(t, allowed)));
    results.group_distinct_many = await repeated(() => batched(users, cycle(DISTINCT), (b) => checker.authorizeMany(b, policy)));
    results.floor_group_distinct_ns = bareNative(raw, users, cycle(DISTINCT), policyHandle);

    const large = await addUsers(fake, LARGE, 'large');
    t0 = performance.now();
    await fill(checker, large);
    results.fill_large_s = Math.round(performance.now() - t0) / 1000;
    results.large_check = await repeated(() => perCall(large, 2 * LARGE, (t) => checker.check(t)));
    results.large_check_many = await repeated(() => batched(large, 2 * LARGE, (b) => checker.checkMany(b)));
    results.floor_large_ns = bareNative(raw, large, 2 * LARGE);

    // ---- memory: RSS per cached token at LARGE tokens ------------------------------------
    const file = path.join(os.tmpdir(), `tokenchecker-bench-${process.pid}.tokens`);
    fs.writeFileSync(file, `${large.join('\n')}\n`);
    try {
      const off = await runMemoryChild(file, fake.url, 0);
      const on = await runMemoryChild(file, fake.url, process.env.TOKENCHECKER_MEMO_BYTES);
      results.memory = {
        tokens: LARGE,
        library_fields_per_token: Math.round(off.rss_delta / LARGE),
        total_per_token: Math.round(on.rss_delta / LARGE),
        binding_per_token: Math.round((on.rss_delta - off.rss_delta) / LARGE),
        binding_heap_per_token: Math.round((on.heap_delta - off.heap_delta) / LARGE),
        memo_limit: on.memo_limit,
        memo_entries: on.memo_entries,
        memo_counted_per_entry: on.memo_entries ? Math.round(on.memo_bytes / on.memo_entries) : 0,
        heap_per_memo_entry: on.memo_entries ? Math.round((on.heap_delta - off.heap_delta) / on.memo_entries) : 0,
      };
    } finally {
      fs.rmSync(file, { force: true });
    }

    // ---- the document path: fetchGroups 'eager' ------------------------------------------
    const eager = new TokenChecker(h.config(fake, { verifyCredentials: false, fetchGroups: 'eager' }));
    try {
      await eager.check(hot);
      results.eager_check = await repeated(() => perCall(hotTokens, Math.min(HITS, 300000), (t) => eager.check(t)));
    } finally {
      eager.close();
    }

    if (!SKIP_ASYNC) {
      // ---- the async path: misses ---------------------------------------------------------
      const cold = await addUsers(fake, MISSES, 'miss');
      const before = await fake.counters();
      results.async_misses = await withLoopMonitor(async () => {
        const start = performance.now();
        const { lat, maxInFlight } = await pool(cold.length, CONCURRENCY, async (i) => {
          const s = await checker.check(cold[i]);
          if (s.cache.source !== 'network' && s.cache.source !== 'coalesced') throw new Error('expected a miss');
        });
        const secs = (performance.now() - start) / 1000;
        return { checks: cold.length, concurrency: maxInFlight, per_sec: Math.round(cold.length / secs), ...summarize(lat) };
      });
      results.async_misses.introspections = (await fake.counters()).introspect - before.introspect;

      // ---- many in flight on a slow server ------------------------------------------------
      const slow = await addUsers(fake, SLOW, 'slow');
      await fake.reset();
      await fake.setFault({ endpoint: 'introspect', latency_ms: LATENCY });
      results.async_slow_server = await withLoopMonitor(async () => {
        const start = performance.now();
        let ticks = 0;
        const timer = setInterval(() => { ticks++; }, 10);
        const { lat, maxInFlight } = await pool(slow.length, slow.length, (i) => checker.check(slow[i]));
        clearInterval(timer);
        const ms = performance.now() - start;
        return {
          checks: slow.length, server_latency_ms: LATENCY, in_flight: maxInFlight, wall_ms: Math.round(ms),
          per_sec: Math.round(slow.length / (ms / 1000)), timer_10ms_ticks: ticks, ...summarize(lat),
        };
      });
      results.async_slow_server.server_max_concurrent = (await fake.counters()).max_concurrent.introspect;
      await fake.clearFaults();
    }
    results.library_stats = (({ checks, hits, misses, coalesced_waits }) => ({ checks, hits, misses, coalesced_waits }))(stats());
  } finally {
    native.close(raw);
    policy.close();
    checker.close();
    await fake.stop();
  }

  if (JSON_OUT) {
    console.log(JSON.stringify(results, null, 2));
    return;
  }
  report(results);
}

// ---- the report -----------------------------------------------------------------------------

function report(r) {
  // a smoke run (small sizes, one cold pass) shows that every phase runs, not the goals
  const verdict = (ok) => (SMOKE ? '(smoke run)' : ok ? 'met' : 'NOT met');
  const M = (n) => `${(n / 1e6).toFixed(2)} M/s`;
  const ratio = (x) => `${x.toFixed(2)}×`;
  const rows = [];
  const rowOf = (what, perCallRes, manyRes, floorNs, goal) => {
    const best = Math.max(perCallRes.best, manyRes.best);
    rows.push([what, `${M(perCallRes.best)} (median ${M(perCallRes.median)})`, `${M(manyRes.best)} (median ${M(manyRes.median)})`,
      floorNs === undefined ? '' : `${floorNs} ns (${M(1e9 / floorNs)})`, `≥ ${M(goal)}`, ratio(best / goal), verdict(best >= goal)]);
  };
  rowOf('hot check, 1 token', r.hot_check, r.hot_check_many, r.floor_hot_ns, GOALS.hot);
  rowOf(`check, ${DISTINCT.toLocaleString()} distinct cached`, r.distinct_check, r.distinct_check_many, r.floor_distinct_ns, GOALS.distinct);
  rowOf(`check, ${LARGE.toLocaleString()} distinct cached`, r.large_check, r.large_check_many, r.floor_large_ns, GOALS.distinct);
  rowOf('authorize by group, 1 token', r.hot_authorize, r.hot_authorize_many, r.floor_hot_authorize_ns, GOALS.group);
  rowOf(`authorize by group, ${GROUP_SMALL.toLocaleString()} distinct`, r.group_small, r.group_small_many, r.floor_group_small_ns, GOALS.group);
  rowOf(`authorize by group, ${DISTINCT.toLocaleString()} distinct`, r.group_distinct, r.group_distinct_many, r.floor_group_distinct_ns, GOALS.group);
  const mem = r.memory;
  rows.push([`RSS the binding adds per cached token, ${mem.tokens.toLocaleString()} tokens`, '', `${mem.binding_per_token} B`, '',
    `≤ ${GOALS.bytesPerToken} B`, ratio(GOALS.bytesPerToken / Math.max(1, mem.binding_per_token)),
    verdict(mem.binding_per_token <= GOALS.bytesPerToken)]);

  console.log(`tokenchecker ${r.version}, node ${r.node}, ${r.cpus} CPUs; batches of ${r.batch}; best of ${r.repeat} passes per row (median beside it), one run`);
  console.log(`answer memo bound (TOKENCHECKER_MEMO_BYTES): ${r.memo_limit_bytes.toLocaleString()} bytes`);
  if (SMOKE) console.log('smoke run: small sizes, one cold pass each; the goals are measured by a full run (npm run bench)');
  console.log('');
  const head = ['path', 'per call: check()/authorize() + Promise.all', 'batch API: checkMany()/authorizeMany()', 'floor: bare native call', 'goal', 'ratio (best / goal)', ''];
  const widths = head.map((h0, i) => Math.max(h0.length, ...rows.map((x) => String(x[i]).length)));
  const line = (cells) => `| ${cells.map((c, i) => String(c).padEnd(widths[i])).join(' | ')} |`;
  console.log(line(head));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const row of rows) console.log(line(row));
  console.log('');
  console.log(`memory at ${mem.tokens.toLocaleString()} tokens (RSS deltas of two answer-path passes over every token, the library's cache filled before):`);
  console.log(`  memo off: ${mem.library_fields_per_token} B/token (the library's tc_answer_fields, built once per answer read, and V8's garbage)`);
  console.log(`  memo on: ${mem.total_per_token} B/token; the binding's share ${mem.binding_per_token} B/token (V8 heap ${mem.binding_heap_per_token} B/token): ` +
    `${mem.memo_entries.toLocaleString()} memo entries in ${mem.memo_limit.toLocaleString()} bytes, counted ${mem.memo_counted_per_entry} B each, ` +
    `${mem.heap_per_memo_entry} B of V8 heap each`);
  console.log(`fill: ${DISTINCT.toLocaleString()} users with groups in ${r.fill_distinct_s} s, ${LARGE.toLocaleString()} in ${r.fill_large_s} s`);
  console.log(`memo after the ${LARGE.toLocaleString()}-token rows: ${r.large_check_many.memo.entries.toLocaleString()} entries`);
  console.log('');
  const sq = r.hot_sequential;
  console.log(`hot check, sequential await (loop yields every 100): ${sq.per_sec.toLocaleString()}/s, p50 ${sq.p50_us} µs, p99 ${sq.p99_us} µs, loop delay p99 ${sq.loop.p99_ms} ms`);
  console.log(`hot check, batches: loop delay p99 ${r.hot_check.loop.p99_ms} ms (per call), ${r.hot_check_many.loop.p99_ms} ms (batch API); ` +
    `${r.distinct_check.loop.p99_ms} / ${r.distinct_check_many.loop.p99_ms} ms over ${DISTINCT.toLocaleString()} users, ` +
    `${r.large_check.loop.p99_ms} / ${r.large_check_many.loop.p99_ms} ms over ${LARGE.toLocaleString()}`);
  console.log(`no-op native call per promise, batches: ${M(r.noop_per_call.best)}; idle loop delay p99 ${r.idle_baseline.loop.p99_ms} ms`);
  console.log(`fetchGroups 'eager', 1 token (document path: tc_try_check + JSON.parse): ${M(r.eager_check.best)}`);
  if (r.async_misses) {
    const am = r.async_misses;
    console.log(`async path, misses (${am.concurrency} in flight): ${am.per_sec.toLocaleString()}/s, p50 ${am.p50_us} µs, p99 ${am.p99_us} µs, loop delay p99 ${am.loop.p99_ms} ms (${am.introspections} introspections)`);
    const as = r.async_slow_server;
    console.log(`async path, server +${as.server_latency_ms} ms: ${as.checks} checks, ${as.in_flight} in flight (server saw ${as.server_max_concurrent} at once): ` +
      `wall ${as.wall_ms} ms, p99 ${Math.round(as.p99_us / 1000)} ms, loop delay p99 ${as.loop.p99_ms} ms, 10 ms timer fired ${as.timer_10ms_ticks}x`);
  }
}

if (process.argv.includes('--memory-child')) {
  memoryChild(process.argv[process.argv.indexOf('--memory-child') + 1]).catch((e) => {
    console.error(e);
    process.exit(1);
  });
} else {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
