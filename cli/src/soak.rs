//! `tokenchecker soak`: a long mixed load through the C ABI against the bundled fake Globus, with
//! injected Globus Auth faults and (with `--backend redis`) a Redis server that is killed and
//! restarted under the load. Every answer is compared with what it must be for that token.
//!
//! Verdicts, per call:
//! * **correct**: the expected status (and on success the right identity, or the right matched
//!   principal);
//! * **excused**: `TC_AUTH_UNAVAILABLE` from a call that overlapped an injected auth fault (a 503,
//!   a closed connection, a garbage or malformed answer): Globus Auth really could not answer;
//!   or that started less than 2 s after one ended (concurrent misses share one fetch, and a
//!   call may join a fetch that met the fault);
//! * **avoidable failure**: `TC_AUTH_UNAVAILABLE` from a call that overlapped no auth fault (Redis
//!   restarts, latency spikes and load must never cost an answer Globus Auth could give);
//! * **wrong**: anything else, in particular a success where a refusal was due (a wrong
//!   positive), a success naming another identity, or a refusal with the wrong status.
//!
//! The run fails (exit 1) on any wrong answer, any avoidable failure, or RSS growth beyond the
//! bound after the warm-up. Exit 2: bad arguments or the set-up failed.
//!
//! The load, per thread, in proportions: checks of 64 cached valid tokens (47%), of fresh valid
//! tokens (8%) and of unknown ones (6%), of tokens refused for one reason each (inactive,
//! expired, not yet valid, wrong scope, wrong audience, no identity set: 8%), `tc_try_check`
//! (4%), authorizations by identity (11%, half of them for somebody else) and by group (12%:
//! the caller's group, a group where its membership is only pending, other groups), purges of
//! pool tokens (0.5%) and of identities (1%), and check → purge → check of fresh tokens that
//! Globus Auth forgets after the purge (2.5%: the second check must not come from any cache).
//! Every pool token is a pending member of one group and an active member of another.
//!
//! Only the library's answers are judged; the fake runs in-process, so its own memory (it keeps
//! every dependent token it ever issued) counts in the RSS figures: the pool-token purges are
//! rare for that reason.

use std::collections::BTreeMap;
use std::ffi::{c_char, CStr, CString};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fake_globus::{fixtures, FakeGlobus};
use serde_json::{json, Value};
use tokenchecker::ffi::{
    tc_authorize, tc_check, tc_checker, tc_free, tc_new, tc_purge, tc_purge_identity, tc_stats,
    tc_string_free, tc_try_check,
};
use tokenchecker::tc_status;

pub const USAGE: &str = "\
  tokenchecker soak [--duration SECS] [--backend memory|redis] [--report FILE] [--threads N]
                    [--max-rss-growth-mib N] [--seed N] [--redis-server PATH] [--ops OP,…]
      Runs a mixed load (cache hits, misses on fresh tokens, inactive and otherwise refused
      tokens, identity and group authorizations, purges, checks after a purge) from several
      threads against the bundled fake Globus for SECS seconds (default 60), injecting auth
      faults (503s, closed connections, malformed answers, latency spikes) and, with
      --backend redis, killing and restarting its own redis-server. Checks every answer;
      prints totals, per-status counts, p50/p99 latency and RSS; --report writes them as
      JSON. Exits 1 on any wrong answer, any failure Globus Auth could have answered, or RSS
      growth beyond the bound (default 64 MiB). --ops keeps only the named operations (as
      printed in the summary), to narrow down a problem.";

const SCOPE: &str = "urn:globus:auth:scope:test:all";
/// Valid tokens whose answers are cached and re-read (hits).
const POOL: usize = 64;
const GROUPS: [&str; 4] = [
    "6a000000-0000-4000-8000-000000000000",
    "6a000000-0000-4000-8000-000000000001",
    "6a000000-0000-4000-8000-000000000002",
    "6a000000-0000-4000-8000-000000000003",
];
/// Every pool token is a *pending* member of this group: it must never authorize.
const GROUP_PENDING: &str = "6b000000-0000-4000-8000-000000000000";
/// Nobody's group.
const GROUP_OTHER: &str = "6c000000-0000-4000-8000-000000000000";
const IDENTITY: &str = "urn:globus:auth:identity:";
const GROUP: &str = "urn:globus:groups:id:";

fn identity_of(i: usize) -> String {
    format!("50a50000-0000-4000-8000-{i:012}")
}

// ---- options --------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Memory,
    Redis,
}

struct Options {
    duration: Duration,
    backend: Backend,
    report: Option<String>,
    threads: usize,
    max_rss_growth_mib: f64,
    seed: u64,
    redis_server: String,
    /// Only these operations (by name), to narrow down a problem; all when empty.
    ops: Vec<Op>,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        duration: Duration::from_secs(60),
        backend: Backend::Memory,
        report: None,
        threads: 4,
        max_rss_growth_mib: 64.0,
        seed: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
        redis_server: "redis-server".into(),
        ops: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--duration" => {
                let s: f64 = value()?.parse().map_err(|_| "--duration: seconds")?;
                if !(s > 0.0 && s.is_finite()) {
                    return Err("--duration must be more than 0".into());
                }
                o.duration = Duration::from_secs_f64(s);
            }
            "--backend" => {
                o.backend = match value()?.as_str() {
                    "memory" => Backend::Memory,
                    "redis" => Backend::Redis,
                    other => return Err(format!("--backend: memory or redis, not {other:?}")),
                }
            }
            "--report" => o.report = Some(value()?),
            "--threads" => {
                o.threads = value()?.parse().map_err(|_| "--threads: a number")?;
                if o.threads == 0 || o.threads > 256 {
                    return Err("--threads: 1 to 256".into());
                }
            }
            "--max-rss-growth-mib" => {
                o.max_rss_growth_mib = value()?.parse().map_err(|_| "--max-rss-growth-mib: MiB")?
            }
            "--seed" => o.seed = value()?.parse().map_err(|_| "--seed: a number")?,
            "--redis-server" => o.redis_server = value()?,
            "--ops" => {
                for name in value()?.split(',') {
                    let op = OPS
                        .iter()
                        .find(|op| op.name() == name.trim())
                        .ok_or_else(|| format!("--ops: unknown operation {name:?}"))?;
                    o.ops.push(*op);
                }
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

// ---- small tools ----------------------------------------------------------------------------

/// xorshift64*: enough randomness for choosing operations, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range_ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// Resident set size, bytes (Linux; 0 elsewhere).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Sleeps up to `d`, in small steps, returning early when `stop` is set.
fn nap(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            return;
        }
        thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// Latencies in nanoseconds, 8 log-spaced buckets per power of two (about 9% wide).
#[derive(Clone)]
struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max: u64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            buckets: vec![0; 512],
            count: 0,
            max: 0,
        }
    }
    fn index(v: u64) -> usize {
        if v < 8 {
            return v as usize;
        }
        let e = 63 - v.leading_zeros() as u64;
        (8 + (e - 3) * 8 + ((v >> (e - 3)) & 7)) as usize
    }
    fn lower(i: usize) -> u64 {
        if i < 8 {
            return i as u64;
        }
        let e = (i as u64 - 8) / 8 + 3;
        let m = (i as u64 - 8) % 8;
        (8 + m) << (e - 3)
    }
    fn record(&mut self, d: Duration) {
        let v = d.as_nanos().min(u64::MAX as u128) as u64;
        self.buckets[Self::index(v)] += 1;
        self.count += 1;
        self.max = self.max.max(v);
    }
    fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            *a += b;
        }
        self.count += o.count;
        self.max = self.max.max(o.max);
    }
    /// The q-quantile, nanoseconds (the middle of its bucket).
    fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let want = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= want {
                let (lo, hi) = (Self::lower(i), Self::lower(i + 1));
                return ((lo + hi) / 2).min(self.max);
            }
        }
        self.max
    }
    fn summary(&self) -> Value {
        let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
        json!({"count": self.count, "p50_us": us(self.quantile(0.5)),
               "p99_us": us(self.quantile(0.99)), "p999_us": us(self.quantile(0.999)),
               "max_us": us(self.max)})
    }
}

// ---- the C ABI, owned strings ---------------------------------------------------------------

struct Checker(*mut tc_checker);
// The C ABI documents checkers as thread-safe.
unsafe impl Send for Checker {}
unsafe impl Sync for Checker {}

impl Drop for Checker {
    fn drop(&mut self) {
        unsafe { tc_free(self.0) }
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in soak strings")
}

/// Takes ownership of a library string.
unsafe fn take(p: *mut c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    let s = CStr::from_ptr(p).to_string_lossy().into_owned();
    tc_string_free(p);
    s
}

impl Checker {
    fn new(config: &Value) -> Result<Checker, String> {
        let text = cstr(&config.to_string());
        let mut c = ptr::null_mut();
        let mut err = ptr::null_mut();
        let st = unsafe { tc_new(text.as_ptr(), &mut c, &mut err) };
        let err = unsafe { take(err) };
        if st != tc_status::TC_OK {
            return Err(format!("tc_new: {} {err}", st.name()));
        }
        Ok(Checker(c))
    }
    fn check(&self, token: &str) -> (tc_status, String) {
        let t = cstr(token);
        let mut out = ptr::null_mut();
        let st = unsafe { tc_check(self.0, t.as_ptr(), &mut out) };
        (st, unsafe { take(out) })
    }
    fn try_check(&self, token: &str) -> (tc_status, String) {
        let t = cstr(token);
        let mut out = ptr::null_mut();
        let st = unsafe { tc_try_check(self.0, t.as_ptr(), &mut out) };
        (st, unsafe { take(out) })
    }
    fn authorize(&self, token: &str, allowed: &[String]) -> (tc_status, String) {
        let t = cstr(token);
        let req = cstr(&json!({"allowed_principals": allowed}).to_string());
        let mut out = ptr::null_mut();
        let st = unsafe { tc_authorize(self.0, t.as_ptr(), req.as_ptr(), &mut out) };
        (st, unsafe { take(out) })
    }
    fn purge(&self, token: &str) -> tc_status {
        let t = cstr(token);
        unsafe { tc_purge(self.0, t.as_ptr()) }
    }
    fn purge_identity(&self, id: &str) -> tc_status {
        let t = cstr(id);
        unsafe { tc_purge_identity(self.0, t.as_ptr()) }
    }
}

fn library_stats() -> Value {
    let mut out = ptr::null_mut();
    let st = unsafe { tc_stats(&mut out) };
    let s = unsafe { take(out) };
    if st != tc_status::TC_OK {
        return Value::Null;
    }
    serde_json::from_str(&s).unwrap_or(Value::Null)
}

// ---- Redis, our own ------------------------------------------------------------------------

struct Redis {
    binary: String,
    port: u16,
    child: Option<Child>,
}

fn free_port() -> Result<u16, String> {
    let l =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

impl Redis {
    fn start(binary: &str) -> Result<Redis, String> {
        let mut r = Redis {
            binary: binary.into(),
            port: free_port()?,
            child: None,
        };
        r.spawn()?;
        Ok(r)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(format!("redis-server exited at start ({status})"));
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(format!("redis-server did not answer on port {}", self.port))
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// SIGKILL: no goodbye to the clients.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---- expectations and verdicts --------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Hit,
    FreshValid,
    FreshUnknown,
    Refused,
    TryCheck,
    AuthIdentity,
    AuthGroup,
    Purge,
    PurgeFresh,
    PurgeIdentity,
}

const OPS: [Op; 10] = [
    Op::Hit,
    Op::FreshValid,
    Op::FreshUnknown,
    Op::Refused,
    Op::TryCheck,
    Op::AuthIdentity,
    Op::AuthGroup,
    Op::Purge,
    Op::PurgeFresh,
    Op::PurgeIdentity,
];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Hit => "check_pool_token",
            Op::FreshValid => "check_fresh_valid",
            Op::FreshUnknown => "check_fresh_unknown",
            Op::Refused => "check_refused_kind",
            Op::TryCheck => "try_check",
            Op::AuthIdentity => "authorize_identity",
            Op::AuthGroup => "authorize_group",
            Op::Purge => "purge_pool_token",
            Op::PurgeFresh => "check_purge_recheck",
            Op::PurgeIdentity => "purge_identity",
        }
    }
    /// Weights out of 1000.
    fn pick(r: u64) -> Op {
        match r % 1000 {
            0..=469 => Op::Hit,
            470..=549 => Op::FreshValid,
            550..=609 => Op::FreshUnknown,
            610..=689 => Op::Refused,
            690..=729 => Op::TryCheck,
            730..=839 => Op::AuthIdentity,
            840..=959 => Op::AuthGroup,
            960..=964 => Op::Purge,
            965..=989 => Op::PurgeFresh,
            _ => Op::PurgeIdentity,
        }
    }
}

/// What one call must answer.
struct Expect {
    status: tc_status,
    /// On TC_OK: the caller's identity (sub, and the only member of `identities`).
    sub: Option<String>,
    /// On TC_OK from tc_authorize: the matched principal.
    matched: Option<String>,
    /// tc_try_check: TC_WOULD_BLOCK is fine too.
    may_block: bool,
}

impl Expect {
    fn status(status: tc_status) -> Expect {
        Expect {
            status,
            sub: None,
            matched: None,
            may_block: false,
        }
    }
    fn ok(sub: String) -> Expect {
        Expect {
            sub: Some(sub),
            ..Expect::status(tc_status::TC_OK)
        }
    }
}

enum Verdict {
    Correct,
    Unavailable,
    Wrong { positive: bool, why: String },
}

fn judge(e: &Expect, st: tc_status, doc: &str) -> Verdict {
    if st == tc_status::TC_WOULD_BLOCK && e.may_block {
        return Verdict::Correct;
    }
    if st != e.status {
        if st == tc_status::TC_AUTH_UNAVAILABLE {
            return Verdict::Unavailable;
        }
        return Verdict::Wrong {
            positive: st == tc_status::TC_OK,
            why: format!(
                "expected {}, got {}: {}",
                e.status.name(),
                st.name(),
                clip(doc)
            ),
        };
    }
    let Ok(v) = serde_json::from_str::<Value>(doc) else {
        return Verdict::Wrong {
            positive: false,
            why: format!("{}: the document is not JSON: {}", st.name(), clip(doc)),
        };
    };
    if st != tc_status::TC_OK {
        if v["error"]["code"] != st.name() {
            return Verdict::Wrong {
                positive: false,
                why: format!("{}: error document says {}", st.name(), clip(doc)),
            };
        }
        return Verdict::Correct;
    }
    if let Some(sub) = &e.sub {
        let ids = v["identities"].as_array();
        let ok = v["active"] == true
            && v["sub"] == sub.as_str()
            && v["effective_identity"] == format!("{IDENTITY}{sub}").as_str()
            && ids.is_some_and(|a| a.len() == 1 && a[0] == sub.as_str());
        if !ok {
            return Verdict::Wrong {
                positive: true,
                why: format!("TC_OK for the wrong caller (want {sub}): {}", clip(doc)),
            };
        }
    }
    if let Some(m) = &e.matched {
        if v["authorization"]["authorized"] != true || v["authorization"]["matched"] != m.as_str() {
            return Verdict::Wrong {
                positive: true,
                why: format!(
                    "authorized through the wrong principal (want {m}): {}",
                    clip(doc)
                ),
            };
        }
    }
    Verdict::Correct
}

/// `cache.source` of a result document.
fn source_of(doc: &str) -> Option<&str> {
    let i = doc.rfind("\"source\":\"")? + "\"source\":\"".len();
    let rest = &doc[i..];
    Some(&rest[..rest.find('"')?])
}

fn clip(s: &str) -> String {
    if s.len() <= 300 {
        return s.to_string();
    }
    let mut end = 300;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

// ---- shared run state -----------------------------------------------------------------------

/// Windows during which Globus Auth was made to fail: `TC_AUTH_UNAVAILABLE` is excused for a
/// call that overlapped one.
#[derive(Default)]
struct FaultLog {
    /// (start, end); end None while the fault is on.
    windows: Vec<(Instant, Option<Instant>)>,
}

/// Concurrent misses share one fetch (src/cache/flight.rs): a call that starts just after a
/// fault ended may join a fetch that started during it, and share its failure. A fetch that met
/// a fault ends quickly (a 503, a reset, a malformed answer), so two seconds are plenty.
const JOINED_FETCH_GRACE: Duration = Duration::from_secs(2);

#[derive(PartialEq, Eq)]
enum Excuse {
    /// The call overlapped an auth fault.
    During,
    /// The call started within JOINED_FETCH_GRACE after one ended.
    JustAfter,
    None,
}

impl FaultLog {
    fn excuse(&self, start: Instant, end: Instant) -> Excuse {
        if self
            .windows
            .iter()
            .any(|(s, e)| *s <= end && e.is_none_or(|e| e >= start))
        {
            return Excuse::During;
        }
        if self
            .windows
            .iter()
            .any(|(_, e)| e.is_some_and(|e| e <= start && start - e <= JOINED_FETCH_GRACE))
        {
            return Excuse::JustAfter;
        }
        Excuse::None
    }
}

struct Run {
    stop: AtomicBool,
    faults: Mutex<FaultLog>,
    /// When Redis was down (killed until answering again), to annotate wrong answers.
    redis_outages: Mutex<FaultLog>,
    calls: AtomicU64,
    wrong: AtomicU64,
    avoidable: AtomicU64,
    excused: AtomicU64,
    fault_windows: AtomicU64,
    latency_spikes: AtomicU64,
    redis_restarts: AtomicU64,
    redis_down_ms: AtomicU64,
    examples: Mutex<Vec<String>>,
}

impl Run {
    fn example(&self, s: String) {
        let mut ex = self.examples.lock().unwrap();
        if ex.len() < 20 {
            eprintln!("soak: {s}");
            ex.push(s);
        }
    }
}

#[derive(Clone)]
struct Tally {
    per_op: Vec<[u64; 4]>, // calls, correct, excused unavailable, wrong-or-avoidable
    statuses: [u64; 12],
    wrong: u64,
    wrong_positive: u64,
    avoidable: u64,
    excused: u64,
    /// Of which: calls that started just after a fault (see JOINED_FETCH_GRACE).
    excused_after_fault: u64,
    all: Histogram,
    per_op_latency: Vec<Histogram>,
    /// Where successful answers came from (`cache.source`).
    sources: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            per_op: vec![[0; 4]; OPS.len()],
            statuses: [0; 12],
            wrong: 0,
            wrong_positive: 0,
            avoidable: 0,
            excused: 0,
            excused_after_fault: 0,
            all: Histogram::new(),
            per_op_latency: vec![Histogram::new(); OPS.len()],
            sources: BTreeMap::new(),
        }
    }
    fn merge(&mut self, o: &Tally) {
        for (a, b) in self.per_op.iter_mut().zip(&o.per_op) {
            for k in 0..4 {
                a[k] += b[k];
            }
        }
        for (a, b) in self.statuses.iter_mut().zip(&o.statuses) {
            *a += b;
        }
        self.wrong += o.wrong;
        self.wrong_positive += o.wrong_positive;
        self.avoidable += o.avoidable;
        self.excused += o.excused;
        self.excused_after_fault += o.excused_after_fault;
        self.all.merge(&o.all);
        for (a, b) in self.per_op_latency.iter_mut().zip(&o.per_op_latency) {
            a.merge(b);
        }
        for (k, v) in &o.sources {
            *self.sources.entry(k.clone()).or_default() += v;
        }
    }
}

fn status_from(code: usize) -> tc_status {
    use tc_status::*;
    [
        TC_OK,
        TC_INVALID_ARGUMENT,
        TC_INVALID_CONFIG,
        TC_INACTIVE_TOKEN,
        TC_INSUFFICIENT_SCOPE,
        TC_WRONG_AUDIENCE,
        TC_TOKEN_EXPIRED,
        TC_NOT_AUTHORIZED,
        TC_CREDENTIALS_REJECTED,
        TC_AUTH_UNAVAILABLE,
        TC_PANIC,
        TC_WOULD_BLOCK,
    ][code]
}

// ---- the workers ----------------------------------------------------------------------------

/// Tokens refused for one reason each, and the status that reason gets.
fn refused_kinds() -> Vec<(&'static str, Value, tc_status)> {
    use tc_status::*;
    vec![
        ("inactive", json!({"active": false}), TC_INACTIVE_TOKEN),
        (
            "expired",
            json!({"exp_in": -100, "identity_set": [identity_of(9001)]}),
            TC_TOKEN_EXPIRED,
        ),
        (
            "not-yet",
            json!({"nbf_in": 600, "identity_set": [identity_of(9002)]}),
            TC_TOKEN_EXPIRED,
        ),
        (
            "wrong-scope",
            json!({"scope": "urn:globus:auth:scope:other:all", "identity_set": [identity_of(9003)]}),
            TC_INSUFFICIENT_SCOPE,
        ),
        (
            "wrong-aud",
            json!({"aud": ["other-client"], "identity_set": [identity_of(9004)]}),
            TC_WRONG_AUDIENCE,
        ),
        (
            "no-identities",
            json!({"omit_identity_set": true}),
            TC_INACTIVE_TOKEN,
        ),
    ]
}

fn pool_token(i: usize) -> String {
    format!("soak-valid-{i}")
}

fn valid_spec(id: &str, group: &str) -> Value {
    json!({"identity_set": [id], "sub": id, "username": format!("{id}@example.org"),
           "groups": [group, {"id": GROUP_PENDING, "status": "pending"}]})
}

fn worker(
    n: usize,
    seed: u64,
    ops: Vec<Op>,
    checker: Arc<Checker>,
    fake: Arc<FakeGlobus>,
    run: Arc<Run>,
) -> Tally {
    let mut rng = Rng::new(seed ^ (n as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    let mut t = Tally::new();
    let refused = refused_kinds();
    let mut fresh = 0u64;
    while !run.stop.load(Ordering::Relaxed) {
        let mut op = Op::pick(rng.next());
        while !ops.is_empty() && !ops.contains(&op) {
            op = Op::pick(rng.next());
        }
        let i = rng.below(POOL as u64) as usize;
        let token = pool_token(i);
        let id = identity_of(i);
        let my_group = GROUPS[i % GROUPS.len()];
        let mut cleanup: Option<String> = None;

        let start = Instant::now();
        let (expect, st, doc) = match op {
            Op::Hit => {
                let (st, doc) = checker.check(&token);
                (Expect::ok(id), st, doc)
            }
            Op::FreshValid => {
                fresh += 1;
                let tok = format!("soak-fresh-{n}-{fresh}");
                let fid = format!("f0000000-0000-4000-8000-{:04}{:08}", n, fresh % 100_000_000);
                fake.add_tokens(json!({ tok.clone(): valid_spec(&fid, my_group) }));
                let (st, doc) = checker.check(&tok);
                cleanup = Some(tok);
                (Expect::ok(fid), st, doc)
            }
            Op::FreshUnknown => {
                fresh += 1;
                let tok = format!("soak-unknown-{n}-{fresh}");
                let (st, doc) = checker.check(&tok);
                (Expect::status(tc_status::TC_INACTIVE_TOKEN), st, doc)
            }
            Op::Refused => {
                let (name, _, status) = &refused[rng.below(refused.len() as u64) as usize];
                let (st, doc) = checker.check(&format!("soak-refused-{name}"));
                (Expect::status(*status), st, doc)
            }
            Op::TryCheck => {
                let (st, doc) = checker.try_check(&token);
                let mut e = Expect::ok(id);
                e.may_block = true;
                (e, st, doc)
            }
            Op::AuthIdentity => {
                // Half the time the caller is allowed, half the time only somebody else is.
                let other = identity_of((i + 1) % POOL);
                if rng.below(2) == 0 {
                    let principal = format!("{IDENTITY}{id}");
                    let allowed = vec![format!("{IDENTITY}{other}"), principal.clone()];
                    let (st, doc) = checker.authorize(&token, &allowed);
                    let mut e = Expect::ok(id);
                    e.matched = Some(principal);
                    (e, st, doc)
                } else {
                    let (st, doc) = checker.authorize(&token, &[format!("{IDENTITY}{other}")]);
                    (Expect::status(tc_status::TC_NOT_AUTHORIZED), st, doc)
                }
            }
            Op::AuthGroup => match rng.below(3) {
                0 => {
                    let principal = format!("{GROUP}{my_group}");
                    let allowed = vec![format!("{GROUP}{GROUP_OTHER}"), principal.clone()];
                    let (st, doc) = checker.authorize(&token, &allowed);
                    let mut e = Expect::ok(id);
                    e.matched = Some(principal);
                    (e, st, doc)
                }
                1 => {
                    let (st, doc) = checker.authorize(&token, &[format!("{GROUP}{GROUP_PENDING}")]);
                    (Expect::status(tc_status::TC_NOT_AUTHORIZED), st, doc)
                }
                _ => {
                    let other = GROUPS[(i + 1) % GROUPS.len()];
                    let allowed = vec![format!("{GROUP}{other}"), format!("{GROUP}{GROUP_OTHER}")];
                    let (st, doc) = checker.authorize(&token, &allowed);
                    (Expect::status(tc_status::TC_NOT_AUTHORIZED), st, doc)
                }
            },
            Op::Purge => {
                let st = checker.purge(&token);
                (Expect::status(tc_status::TC_OK), st, "{}".into())
            }
            Op::PurgeFresh => {
                // A fresh token checked (so cached), purged, forgotten by Globus Auth, checked
                // again: the second answer must come from Globus Auth, not from any cache.
                fresh += 1;
                let tok = format!("soak-purged-{n}-{fresh}");
                let fid = format!("f1000000-0000-4000-8000-{:04}{:08}", n, fresh % 100_000_000);
                fake.add_tokens(json!({ tok.clone(): valid_spec(&fid, my_group) }));
                let (st, doc) = checker.check(&tok);
                if st != tc_status::TC_OK {
                    cleanup = Some(tok);
                    (Expect::ok(fid), st, doc)
                } else {
                    let purged = checker.purge(&tok);
                    fake.remove_token(&tok);
                    if purged != tc_status::TC_OK {
                        (Expect::status(tc_status::TC_OK), purged, "{}".into())
                    } else {
                        let (st, doc) = checker.check(&tok);
                        (Expect::status(tc_status::TC_INACTIVE_TOKEN), st, doc)
                    }
                }
            }
            Op::PurgeIdentity => {
                let st = checker.purge_identity(&id);
                (Expect::status(tc_status::TC_OK), st, "{}".into())
            }
        };
        let end = Instant::now();
        if let Some(tok) = cleanup {
            fake.remove_token(&tok);
        }

        let k = OPS.iter().position(|o| *o == op).unwrap();
        t.per_op[k][0] += 1;
        t.statuses[st as usize] += 1;
        t.all.record(end - start);
        t.per_op_latency[k].record(end - start);
        run.calls.fetch_add(1, Ordering::Relaxed);
        match judge(&expect, st, &doc) {
            Verdict::Correct => {
                t.per_op[k][1] += 1;
                if st == tc_status::TC_OK {
                    if let Some(src) = source_of(&doc) {
                        match t.sources.get_mut(src) {
                            Some(n) => *n += 1,
                            None => {
                                t.sources.insert(src.to_string(), 1);
                            }
                        }
                    }
                }
            }
            Verdict::Unavailable => {
                let excuse = run.faults.lock().unwrap().excuse(start, end);
                if excuse != Excuse::None {
                    t.per_op[k][2] += 1;
                    t.excused += 1;
                    if excuse == Excuse::JustAfter {
                        t.excused_after_fault += 1;
                    }
                    run.excused.fetch_add(1, Ordering::Relaxed);
                } else {
                    t.per_op[k][3] += 1;
                    t.avoidable += 1;
                    run.avoidable.fetch_add(1, Ordering::Relaxed);
                    run.example(format!(
                        "avoidable failure: {} of {} took {:?} and got TC_AUTH_UNAVAILABLE outside any auth fault: {}",
                        op.name(),
                        if op == Op::FreshValid || op == Op::FreshUnknown { "a fresh token" } else { "a pool token" },
                        end - start,
                        clip(&doc)
                    ));
                }
            }
            Verdict::Wrong { positive, why } => {
                t.per_op[k][3] += 1;
                t.wrong += 1;
                if positive {
                    t.wrong_positive += 1;
                }
                run.wrong.fetch_add(1, Ordering::Relaxed);
                let outage = run.redis_outages.lock().unwrap().excuse(start, end) != Excuse::None;
                run.example(format!(
                    "WRONG answer to {} (token #{i}{}): {why}",
                    op.name(),
                    if outage {
                        ", during or just after a Redis outage"
                    } else {
                        ""
                    }
                ));
            }
        }
    }
    t
}

// ---- chaos ----------------------------------------------------------------------------------

/// Injects auth faults for a few hundred milliseconds at a time, and latency spikes.
fn chaos(fake: Arc<FakeGlobus>, run: Arc<Run>, seed: u64) {
    let mut rng = Rng::new(seed ^ 0xC4A0_5C4A_05C4_A05C);
    let faults = [
        json!({"endpoint": "all", "status": 503, "body": "{\"error\":\"unavailable\"}"}),
        json!({"endpoint": "introspect", "status": 503, "retry_after": 1}),
        json!({"endpoint": "introspect", "status": 500, "body": "oops"}),
        json!({"endpoint": "all", "mode": "close"}),
        json!({"endpoint": "introspect", "mode": "garbage"}),
        json!({"endpoint": "introspect", "mode": "active_string"}),
        json!({"endpoint": "introspect", "mode": "missing_exp"}),
        json!({"endpoint": "all", "mode": "wrong_types"}),
        json!({"endpoint": "groups", "status": 503}),
        json!({"endpoint": "dependent_token", "mode": "reset"}),
    ];
    nap(Duration::from_secs(2), &run.stop);
    while !run.stop.load(Ordering::Relaxed) {
        nap(rng.range_ms(1500, 5000), &run.stop);
        if run.stop.load(Ordering::Relaxed) {
            break;
        }
        if rng.below(4) == 0 {
            // A latency spike: slower answers, but every one of them still an answer.
            let ms = 100 + rng.below(300);
            fake.set_fault(json!({"endpoint": "all", "latency_ms": ms}));
            run.latency_spikes.fetch_add(1, Ordering::Relaxed);
            nap(rng.range_ms(500, 2000), &run.stop);
            fake.clear_faults();
        } else {
            let fault = faults[rng.below(faults.len() as u64) as usize].clone();
            let index = {
                let mut log = run.faults.lock().unwrap();
                log.windows.push((Instant::now(), None));
                // Calls never last a minute: forget windows older than that.
                let horizon = Instant::now() - Duration::from_secs(60);
                log.windows.retain(|(_, e)| e.is_none_or(|e| e > horizon));
                log.windows.len() - 1
            };
            fake.set_fault(fault);
            run.fault_windows.fetch_add(1, Ordering::Relaxed);
            nap(rng.range_ms(200, 600), &run.stop);
            fake.clear_faults();
            run.faults.lock().unwrap().windows[index].1 = Some(Instant::now());
        }
    }
    fake.clear_faults();
}

/// Kills Redis (SIGKILL) every `every` to 3 × `every` and starts it again after 0.3 to 3 s.
fn redis_killer(redis: Arc<Mutex<Redis>>, run: Arc<Run>, seed: u64, every: Duration) {
    let mut rng = Rng::new(seed ^ 0x5ED1_5ED1_5ED1_5ED1);
    let lo = every.as_millis() as u64;
    while !run.stop.load(Ordering::Relaxed) {
        nap(rng.range_ms(lo, 3 * lo), &run.stop);
        if run.stop.load(Ordering::Relaxed) {
            break;
        }
        let down_for = rng.range_ms(300, 3000);
        let t = Instant::now();
        let index = {
            let mut log = run.redis_outages.lock().unwrap();
            log.windows.push((t, None));
            log.windows.len() - 1
        };
        redis.lock().unwrap().kill();
        nap(down_for, &run.stop);
        let mut r = redis.lock().unwrap();
        if let Err(e) = r.spawn() {
            run.example(format!("redis-server would not restart: {e}"));
            // Try again on the next round.
        }
        run.redis_outages.lock().unwrap().windows[index].1 = Some(Instant::now());
        run.redis_down_ms
            .fetch_add(t.elapsed().as_millis() as u64, Ordering::Relaxed);
        run.redis_restarts.fetch_add(1, Ordering::Relaxed);
    }
    // Leave it running for the final pass.
    let mut r = redis.lock().unwrap();
    if !r.alive() {
        let _ = r.spawn();
    }
}

// ---- the run --------------------------------------------------------------------------------

pub fn run(args: &[String]) -> ExitCode {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("usage:\n{USAGE}");
        return ExitCode::SUCCESS;
    }
    let o = match parse_args(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tokenchecker soak: {e}\nusage:\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match soak(&o) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("tokenchecker soak: {e}");
            ExitCode::from(2)
        }
    }
}

fn soak(o: &Options) -> Result<bool, String> {
    let rss_at_start = rss();
    let fake = Arc::new(FakeGlobus::start());
    let redis = match o.backend {
        Backend::Redis => Some(Arc::new(Mutex::new(Redis::start(&o.redis_server)?))),
        Backend::Memory => None,
    };
    let cache_config = match &redis {
        Some(r) => json!({"backend": "redis", "url": r.lock().unwrap().url(), "timeout": 10}),
        None => json!({"backend": "memory", "timeout": 10, "max_entries": 20000}),
    };
    let config = json!({
        "client_id": fixtures::CLIENT_ID,
        "client_secret": fixtures::CLIENT_SECRET,
        "expected_scopes": [SCOPE],
        "auth_url": fake.url(),
        "groups_url": fake.url(),
        "connect_timeout_ms": 2000,
        "request_timeout_ms": 5000,
        "max_retries": 1,
        "cache_config": cache_config,
    });

    let mut tokens = serde_json::Map::new();
    for i in 0..POOL {
        tokens.insert(
            pool_token(i),
            valid_spec(&identity_of(i), GROUPS[i % GROUPS.len()]),
        );
    }
    for (name, spec, _) in refused_kinds() {
        tokens.insert(format!("soak-refused-{name}"), spec);
    }
    fake.add_tokens(Value::Object(tokens));
    let checker = Arc::new(Checker::new(&config)?);

    println!(
        "tokenchecker {} soak: {:?}, backend {:?}{}, {} threads, seed {}",
        tokenchecker::VERSION,
        o.duration,
        o.backend,
        redis
            .as_ref()
            .map(|r| format!(" ({})", r.lock().unwrap().url()))
            .unwrap_or_default(),
        o.threads,
        o.seed
    );

    let run = Arc::new(Run {
        stop: AtomicBool::new(false),
        faults: Mutex::new(FaultLog::default()),
        redis_outages: Mutex::new(FaultLog::default()),
        calls: AtomicU64::new(0),
        wrong: AtomicU64::new(0),
        avoidable: AtomicU64::new(0),
        excused: AtomicU64::new(0),
        fault_windows: AtomicU64::new(0),
        latency_spikes: AtomicU64::new(0),
        redis_restarts: AtomicU64::new(0),
        redis_down_ms: AtomicU64::new(0),
        examples: Mutex::new(Vec::new()),
    });
    let started = Instant::now();
    let workers: Vec<_> = (0..o.threads)
        .map(|n| {
            let (c, f, r) = (checker.clone(), fake.clone(), run.clone());
            let (seed, ops) = (o.seed, o.ops.clone());
            thread::Builder::new()
                .name(format!("soak-{n}"))
                .spawn(move || worker(n, seed, ops, c, f, r))
                .expect("spawn a worker")
        })
        .collect();
    let chaos_thread = {
        let (f, r, seed) = (fake.clone(), run.clone(), o.seed);
        thread::spawn(move || chaos(f, r, seed))
    };
    let killer = redis.as_ref().map(|redis| {
        let (rd, r, seed) = (redis.clone(), run.clone(), o.seed);
        // Every 10 to 30 s in a long run; a short one (CI) still sees a few restarts.
        let every = (o.duration / 8).clamp(Duration::from_secs(3), Duration::from_secs(10));
        thread::spawn(move || redis_killer(rd, r, seed, every))
    });

    // Monitor: RSS every 200 ms, progress every 10 s. The warm-up (until the caches hold what a
    // steady load keeps in them: entries live 10 s) is a fifth of the run, 10 to 60 s, at most
    // half the run.
    let warm_up = (o.duration / 5)
        .clamp(Duration::from_secs(10), Duration::from_secs(60))
        .min(o.duration / 2);
    let mut rss_after_warm_up = None;
    let mut rss_max = rss();
    let mut last_report = Instant::now();
    let mut last_calls = 0;
    while started.elapsed() < o.duration {
        thread::sleep(Duration::from_millis(200).min(o.duration.saturating_sub(started.elapsed())));
        let now_rss = rss();
        rss_max = rss_max.max(now_rss);
        if rss_after_warm_up.is_none() && started.elapsed() >= warm_up {
            rss_after_warm_up = Some(now_rss);
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            let calls = run.calls.load(Ordering::Relaxed);
            eprintln!(
                "soak: {:>5.0}s {:>10} calls ({:>6.0}/s) wrong {} avoidable {} excused {} faults {} spikes {} redis restarts {} RSS {:.1} MiB",
                started.elapsed().as_secs_f64(),
                calls,
                (calls - last_calls) as f64 / last_report.elapsed().as_secs_f64(),
                run.wrong.load(Ordering::Relaxed),
                run.avoidable.load(Ordering::Relaxed),
                run.excused.load(Ordering::Relaxed),
                run.fault_windows.load(Ordering::Relaxed),
                run.latency_spikes.load(Ordering::Relaxed),
                run.redis_restarts.load(Ordering::Relaxed),
                mib(now_rss)
            );
            last_calls = calls;
            last_report = Instant::now();
        }
    }
    run.stop.store(true, Ordering::Relaxed);
    let mut total = Tally::new();
    for w in workers {
        match w.join() {
            Ok(t) => total.merge(&t),
            Err(_) => return Err("a worker panicked".into()),
        }
    }
    let _ = chaos_thread.join();
    if let Some(k) = killer {
        let _ = k.join();
    }
    let load_time = started.elapsed();
    let rss_end = rss();
    rss_max = rss_max.max(rss_end);
    let rss_base = rss_after_warm_up.unwrap_or(rss_at_start);

    // Final pass, faults cleared and Redis up: every pool token must check correctly now.
    fake.clear_faults();
    let mut final_wrong = Vec::new();
    for i in 0..POOL {
        let (st, doc) = checker.check(&pool_token(i));
        if !matches!(
            judge(&Expect::ok(identity_of(i)), st, &doc),
            Verdict::Correct
        ) {
            final_wrong.push(format!("pool token #{i}: {} {}", st.name(), clip(&doc)));
        }
    }

    let lib = library_stats();
    let growth = rss_end as f64 - rss_base as f64;
    let growth_mib = growth / (1024.0 * 1024.0);
    let calls = total.all.count;
    let mut statuses = serde_json::Map::new();
    for (code, n) in total.statuses.iter().enumerate() {
        if *n > 0 {
            statuses.insert(status_from(code).name().into(), (*n).into());
        }
    }
    let mut per_op = serde_json::Map::new();
    for (k, op) in OPS.iter().enumerate() {
        let [n, correct, excused, bad] = total.per_op[k];
        per_op.insert(
            op.name().into(),
            json!({"calls": n, "correct": correct, "excused_unavailable": excused,
                   "wrong_or_avoidable": bad, "latency": total.per_op_latency[k].summary()}),
        );
    }
    let examples = run.examples.lock().unwrap().clone();
    let rss_ok = growth_mib < o.max_rss_growth_mib;
    let passed = total.wrong == 0 && total.avoidable == 0 && final_wrong.is_empty() && rss_ok;
    let report = json!({
        "passed": passed,
        "backend": format!("{:?}", o.backend).to_lowercase(),
        "duration_s": (load_time.as_secs_f64() * 10.0).round() / 10.0,
        "threads": o.threads,
        "seed": o.seed,
        "calls": calls,
        "calls_per_s": (calls as f64 / load_time.as_secs_f64()).round(),
        "statuses": statuses,
        "wrong_answers": total.wrong,
        "wrong_positives": total.wrong_positive,
        "avoidable_failures": total.avoidable,
        "excused_unavailable": total.excused,
        "excused_just_after_a_fault": total.excused_after_fault,
        "final_pass_wrong": final_wrong,
        "auth_fault_windows": run.fault_windows.load(Ordering::Relaxed),
        "latency_spikes": run.latency_spikes.load(Ordering::Relaxed),
        "redis_restarts": run.redis_restarts.load(Ordering::Relaxed),
        "redis_down_s": run.redis_down_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        "answer_sources": total.sources,
        "latency": total.all.summary(),
        "per_operation": per_op,
        "rss_mib": {"start": mib(rss_at_start), "after_warm_up": mib(rss_base),
                    "end": mib(rss_end), "max": mib(rss_max), "growth": growth_mib,
                    "bound": o.max_rss_growth_mib},
        "fake_counters": {"introspect": fake.counters().introspect,
                          "dependent_token": fake.counters().dependent_token,
                          "groups": fake.counters().groups},
        "library_stats": lib,
        "examples": examples,
    });

    // The human summary.
    println!(
        "\n== soak summary ({:.0} s, backend {:?})",
        load_time.as_secs_f64(),
        o.backend
    );
    println!(
        "calls            {calls} ({:.0}/s), {} threads",
        calls as f64 / load_time.as_secs_f64(),
        o.threads
    );
    println!(
        "statuses         {}",
        statuses
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "wrong answers    {} (wrong positives {}); final pass {}",
        total.wrong,
        total.wrong_positive,
        if final_wrong.is_empty() {
            "all correct".to_string()
        } else {
            format!("{} wrong", final_wrong.len())
        }
    );
    println!(
        "avoidable fails  {} (TC_AUTH_UNAVAILABLE outside injected auth faults)",
        total.avoidable
    );
    println!(
        "excused          {} TC_AUTH_UNAVAILABLE during {} injected auth faults ({} of them from calls started < 2 s after one, which may join its fetch); {} latency spikes",
        total.excused,
        run.fault_windows.load(Ordering::Relaxed),
        total.excused_after_fault,
        run.latency_spikes.load(Ordering::Relaxed)
    );
    if o.backend == Backend::Redis {
        println!(
            "redis            {} kills/restarts, {:.1} s down in total",
            run.redis_restarts.load(Ordering::Relaxed),
            run.redis_down_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
    }
    println!(
        "answers from     {}",
        total
            .sources
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let l = total.all.summary();
    println!(
        "latency          p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
        l["p50_us"], l["p99_us"], l["p999_us"], l["max_us"]
    );
    for (k, op) in OPS.iter().enumerate() {
        let s = total.per_op_latency[k].summary();
        let [n, correct, excused, bad] = total.per_op[k];
        println!(
            "  {:<20} {n:>9} calls, {correct:>9} correct, {excused:>6} excused, {bad:>3} bad; p50 {} µs, p99 {} µs",
            op.name(),
            s["p50_us"],
            s["p99_us"]
        );
    }
    println!(
        "RSS              start {:.1} MiB, after warm-up {:.1} MiB, end {:.1} MiB, max {:.1} MiB: growth {:+.1} MiB (bound {} MiB){}",
        mib(rss_at_start),
        mib(rss_base),
        mib(rss_end),
        mib(rss_max),
        growth_mib,
        o.max_rss_growth_mib,
        if rss_ok { "" } else { " EXCEEDED" }
    );
    if !lib.is_null() {
        println!(
            "library          checks {}, hits {}, negative hits {}, misses {}, coalesced {}, requests {}, retries {}, backend errors {}, breaker skips {}, rejected entries {}",
            lib["checks"],
            lib["hits"],
            lib["negative_hits"],
            lib["misses"],
            lib["coalesced_waits"],
            lib["requests"]["introspect"],
            lib["requests"]["retries"],
            lib["errors"]["backend"],
            lib["backend"]["breaker_skips"],
            lib["backend"]["rejected_entries"],
        );
    }
    for w in &final_wrong {
        println!("final pass: {w}");
    }
    println!("{}", if passed { "soak PASSED" } else { "soak FAILED" });

    if let Some(path) = &o.report {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        std::fs::write(path, text + "\n").map_err(|e| format!("cannot write {path}: {e}"))?;
        println!("report written to {path}");
    }
    drop(checker);
    drop(redis);
    Ok(passed)
}
