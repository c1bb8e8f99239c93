'use strict';
// Benchmark of the Node binding against the real fake Globus server.
//
//   npm run bench                    # defaults
//   node bench/bench.js --hits 1000000 --misses 5000 --concurrency 200 --latency 50 --json
//
// Phases:
//   1. sync path   - cached checks answered by tc_try_check (no thread hop), one at a time
//                    (latency per call, at most 300k) and pipelined in batches of `batch`
//                    `check()` promises awaited with Promise.all (throughput, `hits` checks).
//                    Settled promises never give the event loop a turn, so both loops yield
//                    (setImmediate) every 100 checks / every batch, like a server handling
//                    requests; the loop delay reported is then the cost of such a slice.
//                    These check one hot token, so check()'s answer memo always hits; then the
//                    same batches cycle over `distinct` cached tokens of distinct users (within
//                    the memo's bound: hits) and over `distinct_over` of them (more than the
//                    memo holds, cycled: a plain LRU would miss every time; once full the memo
//                    admits one miss in 16, so it keeps serving most of them). Throughput is
//                    also given per CPU-second of this process (`cpu_per_sec`): on a shared
//                    machine that is the part other jobs cannot steal.
//                    For comparison, in the same run: the same batches resolving each promise
//                    with a no-op native call taking the same arguments (the ceiling of a
//                    native call + promise + Promise.all), and the bare native checkAnswer
//                    (tc_try_check_answer through N-API, no promise, no object) in a loop.
//                    Last, one hot token of a checker with fetchGroups 'eager' (its answers carry
//                    groups, which the answer handle does not: the document path, JSON.parse).
//   2. async path  - cache misses (distinct new tokens) through tc_check_async and the
//                    threadsafe function, `concurrency` in flight at once, fake server latency 0.
//   3. in flight   - the same with a slow server (`latency` ms): how many checks overlap and
//                    what the event loop feels meanwhile.
// Event-loop delay (perf_hooks.monitorEventLoopDelay, 5 ms resolution) is recorded during every
// phase and reported as the lateness beyond the 5 ms sampling interval; an idle second is
// measured first as the machine's baseline.
const { performance, monitorEventLoopDelay } = require('perf_hooks');
const path = require('path');
const { TokenChecker, stats, version, resultMemo } = require('..');
const h = require('../test/helpers');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = process.argv[i + 1];
  return v === undefined || v.startsWith('--') ? true : Number.isNaN(Number(v)) ? v : Number(v);
}

const HITS = arg('hits', 1000000);
const BATCH = arg('batch', 1000);
const DISTINCT = arg('distinct', 1000);
const DISTINCT_OVER = arg('distinct_over', 5000);
const MISSES = arg('misses', 5000);
const CONCURRENCY = arg('concurrency', 200);
const LATENCY = arg('latency', 50);
const SLOW = arg('slow', 2000);
const JSON_OUT = arg('json', false) === true;

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
function loopDelay(h) {
  const ms = (ns) => Math.max(0, Math.round((ns - RESOLUTION_MS * 1e6) / 1e4) / 100);
  if (h.count === 0) return { samples: 0, p50_ms: NaN, p99_ms: NaN, max_ms: NaN };
  return { samples: h.count, p50_ms: ms(h.percentile(50)), p99_ms: ms(h.percentile(99)), max_ms: ms(h.max) };
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

async function addTokens(fake, n, label, spec = () => ({})) {
  const tokens = [];
  for (let start = 0; start < n; start += 2000) {
    const specs = {};
    for (let i = start; i < Math.min(n, start + 2000); i++) {
      const t = h.uniqueToken(label);
      tokens.push(t);
      specs[t] = spec(i);
    }
    await fake.addTokens(specs);
  }
  return tokens;
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

async function main() {
  const fake = await h.startFake();
  const checker = new TokenChecker(h.config(fake, { cacheConfig: { backend: 'memory', timeout: 300, maxEntries: 1000000 } }));
  const results = { version: version(), node: process.version, cpus: require('os').availableParallelism?.() ?? require('os').cpus().length };
  try {
    results.idle_baseline = await withLoopMonitor(() => new Promise((r) => setTimeout(() => r({}), 1000)));

    // ---- 1. sync path: cached hits --------------------------------------------------------
    const hot = await h.newToken(fake);
    await checker.check(hot);
    for (let i = 0; i < 5000; i++) await checker.check(hot); // warm up
    results.sync_sequential = await withLoopMonitor(async () => {
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
      const secs = (performance.now() - t0) / 1000;
      return { checks: n, per_sec: Math.round(n / secs), ...summarize(lat) };
    });
    // `tokens` cycled in batches of BATCH check() promises, awaited with Promise.all
    const pipelined = (tokens, total, c = checker) => withLoopMonitor(async () => {
      const memo0 = resultMemo();
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      let done = 0;
      let k = 0;
      while (done < total) {
        const batch = [];
        for (let i = 0; i < BATCH && done + i < total; i++) {
          batch.push(c.check(tokens[k]));
          if (++k === tokens.length) k = 0;
        }
        const states = await Promise.all(batch);
        if (states[0].cache.source !== 'memory') throw new Error(`expected a cache hit, got ${states[0].cache.source}`);
        done += states.length;
        await yieldToLoop();
      }
      const secs = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      const memo = resultMemo();
      return {
        checks: done, batch: BATCH, tokens: tokens.length, per_sec: Math.round(done / secs),
        cpu_per_sec: Math.round(done / ((cpu.user + cpu.system) / 1e6)),
        memo_hits: memo.hits - memo0.hits, memo_misses: memo.misses - memo0.misses,
      };
    });
    results.sync_pipelined = await pipelined([hot], HITS);

    // the ceilings: a no-op native call per promise, and the bare native call
    const native = require('..')._native;
    const [, raw] = native.create(require('..')._configToJson(h.config(fake, { verifyCredentials: false })));
    results.noop_pipelined = await withLoopMonitor(async () => {
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      for (let done = 0; done < HITS; done += BATCH) {
        const batch = [];
        for (let i = 0; i < BATCH; i++) batch.push(Promise.resolve(native.noop(raw, hot)));
        await Promise.all(batch);
        await yieldToLoop();
      }
      const secs = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      return { calls: HITS, per_sec: Math.round(HITS / secs), cpu_per_sec: Math.round(HITS / ((cpu.user + cpu.system) / 1e6)) };
    });
    results.native_check_answer = (() => {
      const n = Math.min(HITS, 1000000);
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        if (native.checkAnswer(raw, hot) !== undefined || native.answerOut[0] === 0) throw new Error('expected a cached answer');
      }
      return { calls: n, per_sec: Math.round(n / ((performance.now() - t0) / 1000)) };
    })();
    native.close(raw);

    // distinct users (distinct result documents), all cached
    const spec = (i) => {
      const sub = require('crypto').randomUUID();
      return { sub, identity_set: [sub], username: `user${i}@example.org`, name: `User ${i}` };
    };
    const warm = async (tokens) => {
      for (let i = 0; i < tokens.length; i += 200) await Promise.all(tokens.slice(i, i + 200).map((t) => checker.check(t)));
    };
    const distinct = await addTokens(fake, DISTINCT, 'distinct', spec);
    await warm(distinct);
    results.sync_distinct = await pipelined(distinct, Math.min(HITS, 300000));
    const over = await addTokens(fake, DISTINCT_OVER, 'over', spec);
    await warm(over);
    results.sync_distinct_over = await pipelined(over, Math.min(HITS, 100000));
    results.sync_distinct_over.memo_max_entries = resultMemo().maxEntries;

    // fetchGroups 'eager': cached answers carry groups, so check() takes the document path
    const eager = new TokenChecker(h.config(fake, { verifyCredentials: false, fetchGroups: 'eager' }));
    try {
      const member = await h.newToken(fake, { groups: [h.GROUP_MEMBER] });
      await eager.check(member);
      results.sync_eager = await pipelined([member], Math.min(HITS, 300000), eager);
    } finally {
      eager.close();
    }

    // ---- 2. async path: misses ------------------------------------------------------------
    const cold = await addTokens(fake, MISSES, 'miss');
    const before = await fake.counters();
    results.async_misses = await withLoopMonitor(async () => {
      const t0 = performance.now();
      const { lat, maxInFlight } = await pool(cold.length, CONCURRENCY, async (i) => {
        const s = await checker.check(cold[i]);
        if (s.cache.source !== 'network' && s.cache.source !== 'coalesced') throw new Error('expected a miss');
      });
      const secs = (performance.now() - t0) / 1000;
      return { checks: cold.length, concurrency: maxInFlight, per_sec: Math.round(cold.length / secs), ...summarize(lat) };
    });
    const after = await fake.counters();
    results.async_misses.introspections = after.introspect - before.introspect;

    // ---- 3. many in flight on a slow server -------------------------------------------------
    const slow = await addTokens(fake, SLOW, 'slow');
    await fake.reset();
    await fake.setFault({ endpoint: 'introspect', latency_ms: LATENCY });
    results.async_slow_server = await withLoopMonitor(async () => {
      const t0 = performance.now();
      let ticks = 0;
      const timer = setInterval(() => { ticks++; }, 10);
      const { lat, maxInFlight } = await pool(slow.length, slow.length, (i) => checker.check(slow[i]));
      clearInterval(timer);
      const ms = performance.now() - t0;
      return {
        checks: slow.length,
        server_latency_ms: LATENCY,
        in_flight: maxInFlight,
        wall_ms: Math.round(ms),
        per_sec: Math.round(slow.length / (ms / 1000)),
        timer_10ms_ticks: ticks,
        ...summarize(lat),
      };
    });
    results.async_slow_server.server_max_concurrent = (await fake.counters()).max_concurrent.introspect;
    await fake.clearFaults();
    results.library_stats = (({ checks, hits, misses, coalesced_waits }) => ({ checks, hits, misses, coalesced_waits }))(stats());
  } finally {
    checker.close();
    await fake.stop();
  }

  if (JSON_OUT) {
    console.log(JSON.stringify(results, null, 2));
    return;
  }
  const r = results;
  const line = (label, o) => console.log(`${label.padEnd(34)} ${o}`);
  console.log(`tokenchecker ${r.version}, node ${r.node}, ${r.cpus} CPUs`);
  console.log(`event-loop delay = lateness of a 5 ms timer; idle baseline on this machine: p99 ${r.idle_baseline.loop.p99_ms} ms, max ${r.idle_baseline.loop.max_ms} ms`);
  console.log('');
  const sq = r.sync_sequential;
  line('sync path, sequential await', `(loop yields every 100 checks)`);
  line('', `${sq.per_sec.toLocaleString()} checks/s   p50 ${sq.p50_us} µs   p99 ${sq.p99_us} µs   loop delay p99 ${sq.loop.p99_ms} ms`);
  const sp = r.sync_pipelined;
  line(`sync path, batches of ${sp.batch}`, `${sp.per_sec.toLocaleString()} checks/s (${sp.cpu_per_sec.toLocaleString()} per CPU-s)   loop delay p99 ${sp.loop.p99_ms} ms (max ${sp.loop.max_ms} ms, ${sp.loop.samples} samples; loop yields every batch)`);
  const np = r.noop_pipelined;
  line(`  vs no-op native call, batches`, `${np.per_sec.toLocaleString()} calls/s (${np.cpu_per_sec.toLocaleString()} per CPU-s)   loop delay p99 ${np.loop.p99_ms} ms`);
  line(`  vs bare native checkAnswer loop`, `${r.native_check_answer.per_sec.toLocaleString()} calls/s (no promise, no object)`);
  for (const [label, d] of [['', r.sync_distinct], [' (> memo)', r.sync_distinct_over]]) {
    line(`  ${d.tokens} distinct tokens${label}`, `${d.per_sec.toLocaleString()} checks/s (${d.cpu_per_sec.toLocaleString()} per CPU-s)   loop delay p99 ${d.loop.p99_ms} ms (max ${d.loop.max_ms} ms)   answer memo: ${d.memo_hits} hits, ${d.memo_misses} misses`);
  }
  const se = r.sync_eager;
  line(`  1 token, fetchGroups 'eager'`, `${se.per_sec.toLocaleString()} checks/s (${se.cpu_per_sec.toLocaleString()} per CPU-s)   loop delay p99 ${se.loop.p99_ms} ms (document path: tc_try_check + JSON.parse)`);
  const am = r.async_misses;
  line(`async path (misses, ${am.concurrency} in flight)`, `${am.per_sec.toLocaleString()} checks/s   p50 ${am.p50_us} µs   p99 ${am.p99_us} µs   loop delay p99 ${am.loop.p99_ms} ms   (${am.introspections} introspections)`);
  const as = r.async_slow_server;
  line(`async path, server +${as.server_latency_ms} ms`, `${as.checks} checks, ${as.in_flight} in flight (server saw ${as.server_max_concurrent} at once): wall ${as.wall_ms} ms, p50 ${as.p50_us / 1000 | 0} ms, p99 ${Math.round(as.p99_us / 1000)} ms, loop delay p99 ${as.loop.p99_ms} ms, 10 ms timer fired ${as.timer_10ms_ticks}x`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
