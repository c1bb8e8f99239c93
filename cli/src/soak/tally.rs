//! Counts: the live ones every thread shares ([`Run`]) and each worker's own ([`Tally`]), merged
//! at the end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Mutex;

use super::fleet::VictimCall;
use super::histogram::Histogram;
use super::judge::FaultLog;
use super::workers::OPS;

/// Live state every thread shares: the stop flag, the fault windows, running counts (for the
/// progress lines) and the first few examples of trouble.
#[derive(Default)]
pub(super) struct Run {
    pub(super) stop: AtomicBool,
    pub(super) faults: Mutex<FaultLog>,
    /// Of those, the ones where the server itself failed (5xx, closed connections): the only
    /// ones that may turn a stale answer on (`--fleet`; never a 429 or a malformed answer).
    pub(super) upstream_faults: Mutex<FaultLog>,
    /// When Redis was down (killed until answering again), to annotate wrong answers.
    pub(super) redis_outages: Mutex<FaultLog>,
    pub(super) calls: AtomicU64,
    pub(super) wrong: AtomicU64,
    pub(super) avoidable: AtomicU64,
    pub(super) excused: AtomicU64,
    pub(super) fault_windows: AtomicU64,
    pub(super) latency_spikes: AtomicU64,
    pub(super) brownouts: AtomicU64,
    pub(super) rate_limits: AtomicU64,
    pub(super) redis_restarts: AtomicU64,
    pub(super) redis_down_ms: AtomicU64,
    pub(super) examples: Mutex<Vec<String>>,
}

impl Run {
    pub(super) fn example(&self, s: String) {
        let mut ex = self.examples.lock().unwrap();
        if ex.len() < 20 {
            eprintln!("soak: {s}");
            ex.push(s);
        }
    }
}

/// One worker's counts and latencies.
#[derive(Clone)]
pub(super) struct Tally {
    pub(super) per_op: Vec<[u64; 4]>, // calls, correct, excused unavailable, wrong-or-avoidable
    pub(super) statuses: [u64; 12],
    pub(super) wrong: u64,
    pub(super) wrong_positive: u64,
    pub(super) avoidable: u64,
    pub(super) excused: u64,
    /// Of which: calls that started just after a fault (see JOINED_FETCH_GRACE).
    pub(super) excused_after_fault: u64,
    pub(super) all: Histogram,
    pub(super) per_op_latency: Vec<Histogram>,
    /// Where successful answers came from (`cache.source`).
    pub(super) sources: BTreeMap<String, u64>,
    /// Answers that are no clean answer: TC_PANIC, or a document that is not JSON.
    pub(super) malformed: u64,
    /// Stale answers to calls that overlapped no server failure (`--fleet`: wrong).
    pub(super) stale_outside_failures: u64,
    /// `--fleet`: the victim checks, judged at the end.
    pub(super) victim_calls: Vec<VictimCall>,
}

impl Tally {
    pub(super) fn new() -> Tally {
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
            malformed: 0,
            stale_outside_failures: 0,
            victim_calls: Vec::new(),
        }
    }
    pub(super) fn merge(&mut self, mut o: Tally) {
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
        self.malformed += o.malformed;
        self.stale_outside_failures += o.stale_outside_failures;
        self.victim_calls.append(&mut o.victim_calls);
        for (k, v) in &o.sources {
            *self.sources.entry(k.clone()).or_default() += v;
        }
    }
}
