//! `--fleet`: revocations under brownouts, purges from another process of the fleet.
//!
//! Victims are fresh tokens, created in batches that share one identity. Workers check them
//! (so they are cached in the shared backend and remembered for `stale_if_error_s`) with the
//! rest of the load. A few seconds after its creation a batch is revoked at the fake (it answers
//! `"active": false` from then on) and then, in most batches, purged by the purger, another OS
//! process on the same backend ([`super::purger`]): the whole identity with
//! `tc_purge_identity`, or some of its tokens one by one with `tc_purge`; the rest is left for
//! the cache's lifetime to forget.
//!
//! Every victim check is recorded (its start and end, unix µs, its status and where the answer
//! came from), and judged at the end against the revocations and the purger's reports
//! ([`judge_victims`]). An answer saying active for a victim is wrong when the call started
//! * after a purge of it (or of its identity) had ended, whatever the answer's source (a stale
//!   answer included) — except an answer *coalesced* with a fetch already in flight, started
//!   less than [`JOIN_GRACE`] after the purge ended: that fetch asked Globus Auth before the
//!   revocation;
//! * after the library had already answered `TC_INACTIVE_TOKEN` for it since its revocation (a
//!   fresh inactive answer forgets the stale copy, and replaces the cached one);
//! * more than the cache's `timeout` plus [`JOIN_GRACE`] after its revocation, unless it is a
//!   stale answer the library could not know better of (every fetch since the revocation met a
//!   server failure, and nobody purged the token): those are counted, not failed.
//!
//! A `TC_INACTIVE_TOKEN` for a victim from a call that ended before its revocation began is
//! wrong too.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use fake_globus::FakeGlobus;
use serde_json::{json, Value};
use tokenchecker::tc_status;

use super::chaos::nap;
use super::ffi::Checker;
use super::purger::{unix_us, Purged, Purger};
use super::rng::Rng;
use super::tally::Run;
use super::tokens::{valid_spec, GROUPS, IDENTITY};

/// How long after a purge ended a call may still join a fetch that asked before the
/// revocation (see the module documentation); also the margin on the cache's lifetime.
pub(super) const JOIN_GRACE: Duration = Duration::from_secs(2);

/// One victim token.
pub(super) struct Victim {
    pub(super) token: String,
    pub(super) identity: String,
}

/// How a batch is revoked.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Revoked at the fake, then the identity purged in the purger.
    Identity,
    /// Revoked at the fake, then some of its tokens purged in the purger.
    Tokens,
    /// Revoked at the fake only.
    RevokeOnly,
    /// Never revoked: active all along (served stale in brownouts once their entries expired).
    Keep,
}

/// One purge the purger made.
pub(super) struct PurgeEvent {
    victims: Vec<usize>,
    identity: bool,
    purged: Purged,
}

/// Everything shared about the victims.
#[derive(Default)]
pub(super) struct Fleet {
    victims: RwLock<Vec<Victim>>,
    /// The victims the workers check now: (created, index).
    live: RwLock<VecDeque<(Instant, usize)>>,
    /// Per victim: the revocation at the fake, (began, ended) in unix µs.
    revoked: Mutex<Vec<Option<(u64, u64)>>>,
    purges: Mutex<Vec<PurgeEvent>>,
    pub(super) batches: AtomicU64,
    pub(super) purger_failures: Mutex<Vec<String>>,
}

/// One recorded victim check.
#[derive(Clone)]
pub(super) struct VictimCall {
    pub(super) victim: usize,
    pub(super) start_us: u64,
    pub(super) end_us: u64,
    pub(super) status: tc_status,
    pub(super) source: &'static str,
}

pub(super) fn source_name(s: Option<&str>) -> &'static str {
    match s {
        Some("network") => "network",
        Some("coalesced") => "coalesced",
        Some("memory") => "memory",
        Some("near") => "near",
        Some("redis") => "redis",
        Some("memcached") => "memcached",
        Some("stale") => "stale",
        Some(_) => "other",
        None => "none",
    }
}

impl Fleet {
    /// A victim to check: (index, token, identity).
    pub(super) fn pick(&self, rng: &mut Rng) -> Option<(usize, String, String)> {
        let live = self.live.read().unwrap();
        if live.is_empty() {
            return None;
        }
        let (_, v) = live[rng.below(live.len() as u64) as usize];
        drop(live);
        let victims = self.victims.read().unwrap();
        let victim = &victims[v];
        Some((v, victim.token.clone(), victim.identity.clone()))
    }
}

struct Batch {
    victims: Vec<usize>,
    identity: String,
    revoke_at: Instant,
    mode: Mode,
}

/// Creates, revokes and purges victims until the run stops. `live_for`: how long a victim is
/// checked after its creation.
pub(super) fn revoker(
    fleet: Arc<Fleet>,
    fake: Arc<FakeGlobus>,
    mut purger: Purger,
    run: Arc<Run>,
    seed: u64,
    live_for: Duration,
) {
    let mut rng = Rng::new(seed ^ 0x4E70_4E70_4E70_4E70);
    let mut pending: Vec<Batch> = Vec::new();
    let mut next_batch = Instant::now();
    let mut k = 0u64;
    while !run.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next_batch {
            k += 1;
            let identity = format!("f3000000-0000-4000-8000-{k:012}");
            let m = 1 + rng.below(12) as usize;
            let mut specs = serde_json::Map::new();
            let mut indices = Vec::with_capacity(m);
            {
                let mut victims = fleet.victims.write().unwrap();
                for j in 0..m {
                    let token = format!("soak-victim-{k}-{j}");
                    specs.insert(
                        token.clone(),
                        valid_spec(&identity, GROUPS[k as usize % GROUPS.len()]),
                    );
                    indices.push(victims.len());
                    victims.push(Victim {
                        token,
                        identity: identity.clone(),
                    });
                }
                fleet.revoked.lock().unwrap().resize(victims.len(), None);
            }
            fake.add_tokens(Value::Object(specs));
            {
                let mut live = fleet.live.write().unwrap();
                live.extend(indices.iter().map(|&i| (now, i)));
            }
            let mode = match rng.below(100) {
                0..=34 => Mode::Identity,
                35..=69 => Mode::Tokens,
                70..=84 => Mode::RevokeOnly,
                _ => Mode::Keep,
            };
            pending.push(Batch {
                victims: indices,
                identity,
                revoke_at: now + rng.range_ms(1000, 4000),
                mode,
            });
            fleet.batches.fetch_add(1, Ordering::Relaxed);
            next_batch = now + rng.range_ms(300, 900);
        }
        {
            let mut live = fleet.live.write().unwrap();
            while live.front().is_some_and(|(t, _)| now - *t > live_for) {
                live.pop_front();
            }
        }
        let (due, later): (Vec<Batch>, Vec<Batch>) = pending
            .into_iter()
            .filter(|b| b.mode != Mode::Keep)
            .partition(|b| b.revoke_at <= now);
        pending = later;
        for batch in due {
            revoke(&fleet, &fake, &mut purger, &mut rng, batch);
        }
        nap(Duration::from_millis(50), &run.stop);
    }
}

fn revoke(fleet: &Fleet, fake: &FakeGlobus, purger: &mut Purger, rng: &mut Rng, batch: Batch) {
    let tokens: Vec<String> = {
        let victims = fleet.victims.read().unwrap();
        batch
            .victims
            .iter()
            .map(|&v| victims[v].token.clone())
            .collect()
    };
    let mut inactive = serde_json::Map::new();
    for t in &tokens {
        inactive.insert(t.clone(), json!({"active": false}));
    }
    let began = unix_us();
    fake.add_tokens(Value::Object(inactive));
    let ended = unix_us();
    {
        let mut revoked = fleet.revoked.lock().unwrap();
        for &v in &batch.victims {
            revoked[v] = Some((began, ended));
        }
    }
    let record = |victims: Vec<usize>, identity: bool, r: Result<Purged, String>| match r {
        Ok(purged) => {
            if !purged.ok {
                fleet
                    .purger_failures
                    .lock()
                    .unwrap()
                    .push("a purge in the purger did not answer TC_OK".into());
            }
            fleet.purges.lock().unwrap().push(PurgeEvent {
                victims,
                identity,
                purged,
            })
        }
        Err(e) => fleet.purger_failures.lock().unwrap().push(e),
    };
    match batch.mode {
        Mode::Identity => {
            // Both spellings the C ABI takes: the bare id and the principal.
            let id = if rng.below(2) == 0 {
                batch.identity.clone()
            } else {
                format!("{IDENTITY}{}", batch.identity)
            };
            record(batch.victims.clone(), true, purger.purge_identity(&id));
        }
        Mode::Tokens => {
            for (n, (&v, token)) in batch.victims.iter().zip(&tokens).enumerate() {
                if n == 0 || rng.below(10) < 6 {
                    record(vec![v], false, purger.purge(token));
                }
            }
        }
        Mode::RevokeOnly | Mode::Keep => {}
    }
}

/// What the victim checks came to.
#[derive(Default)]
pub(super) struct FleetVerdict {
    pub(super) victims: usize,
    pub(super) batches: u64,
    pub(super) victim_calls: usize,
    /// Calls started after the victim's revocation.
    pub(super) calls_after_revocation: usize,
    /// Of which: after a purge of it had ended.
    pub(super) calls_after_purge: usize,
    /// Of which: answered TC_AUTH_UNAVAILABLE (a brownout, and no stale answer given).
    pub(super) unavailable_after_purge: usize,
    pub(super) token_purges: usize,
    pub(super) identity_purges: usize,
    /// Purges during which the purger's library met a backend error (not counted as purges).
    pub(super) purges_not_reached: usize,
    /// The longest purge in the other process, ms.
    pub(super) longest_purge_ms: f64,
    /// Active answers after the revocation, within the cache's lifetime (allowed).
    pub(super) active_within_lifetime: usize,
    /// Coalesced active answers to calls started just after a purge (allowed, see JOIN_GRACE).
    pub(super) joined_before_purge: usize,
    /// Stale active answers after the cache's lifetime for revoked, unpurged victims whose
    /// every fetch since the revocation failed (allowed: nothing could tell the library).
    pub(super) stale_unknowable: usize,
    /// Stale answers for victims, all told.
    pub(super) stale_answers: usize,
    /// Of which: for victims never revoked.
    pub(super) stale_for_active: usize,
    /// Wrong: active after a purge.
    pub(super) active_after_purge: usize,
    /// Wrong: active after the library had answered inactive since the revocation.
    pub(super) active_after_inactive: usize,
    /// Wrong: active (not stale) past the cache's lifetime.
    pub(super) active_after_lifetime: usize,
    /// Of the wrong ones: stale answers.
    pub(super) wrong_stale: usize,
    /// Wrong: inactive before the revocation.
    pub(super) inactive_before_revocation: usize,
    pub(super) examples: Vec<String>,
    /// The final pass: purged or long-revoked victims that did not check inactive.
    pub(super) final_wrong: Vec<String>,
    pub(super) purger_failures: Vec<String>,
}

impl FleetVerdict {
    pub(super) fn wrong(&self) -> usize {
        self.active_after_purge
            + self.active_after_inactive
            + self.active_after_lifetime
            + self.inactive_before_revocation
    }

    pub(super) fn passed(&self) -> bool {
        self.wrong() == 0 && self.final_wrong.is_empty() && self.purger_failures.is_empty()
    }

    pub(super) fn to_json(&self) -> Value {
        json!({
            "passed": self.passed(),
            "victims": self.victims,
            "batches": self.batches,
            "victim_calls": self.victim_calls,
            "calls_after_revocation": self.calls_after_revocation,
            "calls_after_purge": self.calls_after_purge,
            "unavailable_after_purge": self.unavailable_after_purge,
            "token_purges": self.token_purges,
            "identity_purges": self.identity_purges,
            "purges_not_reached": self.purges_not_reached,
            "longest_purge_ms": self.longest_purge_ms,
            "active_within_lifetime": self.active_within_lifetime,
            "joined_before_purge": self.joined_before_purge,
            "stale_unknowable": self.stale_unknowable,
            "stale_answers": self.stale_answers,
            "stale_answers_for_active_victims": self.stale_for_active,
            "wrong": {
                "active_after_purge": self.active_after_purge,
                "active_after_inactive_answer": self.active_after_inactive,
                "active_after_cache_lifetime": self.active_after_lifetime,
                "of_which_stale": self.wrong_stale,
                "inactive_before_revocation": self.inactive_before_revocation,
            },
            "final_pass_wrong": self.final_wrong,
            "purger_failures": self.purger_failures,
            "examples": self.examples,
        })
    }
}

/// Judges the recorded victim checks (see the module documentation); `timeout`: the cache's.
pub(super) fn judge_victims(
    fleet: &Fleet,
    calls: &mut [VictimCall],
    timeout: Duration,
) -> FleetVerdict {
    let victims = fleet.victims.read().unwrap();
    let revoked = fleet.revoked.lock().unwrap();
    let purges = fleet.purges.lock().unwrap();
    let mut v = FleetVerdict {
        victims: victims.len(),
        batches: fleet.batches.load(Ordering::Relaxed),
        victim_calls: calls.len(),
        purger_failures: fleet.purger_failures.lock().unwrap().clone(),
        ..Default::default()
    };
    // The first reached purge of each victim: when it ended.
    let mut purged_at: HashMap<usize, u64> = HashMap::new();
    for p in purges.iter() {
        if p.identity {
            v.identity_purges += 1;
        } else {
            v.token_purges += 1;
        }
        let took = p.purged.end_us.saturating_sub(p.purged.start_us) as f64 / 1000.0;
        v.longest_purge_ms = v.longest_purge_ms.max(took);
        if !(p.purged.ok && p.purged.reached) {
            v.purges_not_reached += 1;
            continue;
        }
        for &victim in &p.victims {
            let at = purged_at.entry(victim).or_insert(u64::MAX);
            *at = (*at).min(p.purged.end_us);
        }
    }
    calls.sort_by_key(|c| c.start_us);
    // When the library first answered inactive for each victim since its revocation.
    let mut inactive_at: HashMap<usize, u64> = HashMap::new();
    for c in calls.iter() {
        if c.status != tc_status::TC_INACTIVE_TOKEN {
            continue;
        }
        match revoked.get(c.victim).copied().flatten() {
            Some((_, ended)) if c.start_us > ended => {
                let at = inactive_at.entry(c.victim).or_insert(u64::MAX);
                *at = (*at).min(c.end_us);
            }
            Some((began, _)) if c.end_us < began => {
                v.inactive_before_revocation += 1;
                example(
                    &mut v.examples,
                    &victims[c.victim],
                    c,
                    "inactive before its revocation",
                );
            }
            Some(_) => {}
            None => {
                v.inactive_before_revocation += 1;
                example(
                    &mut v.examples,
                    &victims[c.victim],
                    c,
                    "inactive, never revoked",
                );
            }
        }
    }
    let grace = JOIN_GRACE.as_micros() as u64;
    let lifetime = (timeout + JOIN_GRACE).as_micros() as u64;
    for c in calls.iter() {
        if c.status == tc_status::TC_OK && c.source == "stale" {
            v.stale_answers += 1;
        }
        let Some((_, revoked_end)) = revoked.get(c.victim).copied().flatten() else {
            if c.status == tc_status::TC_OK && c.source == "stale" {
                v.stale_for_active += 1;
            }
            continue;
        };
        if c.start_us <= revoked_end {
            continue;
        }
        v.calls_after_revocation += 1;
        let purge = purged_at.get(&c.victim).copied();
        let after_purge = purge.is_some_and(|p| c.start_us > p);
        if after_purge {
            v.calls_after_purge += 1;
            if c.status == tc_status::TC_AUTH_UNAVAILABLE {
                v.unavailable_after_purge += 1;
            }
        }
        if c.status != tc_status::TC_OK {
            continue;
        }
        let stale = c.source == "stale";
        let why = if let Some(p) = purge.filter(|_| after_purge) {
            if c.source == "coalesced" && c.start_us <= p + grace {
                v.joined_before_purge += 1;
                continue;
            }
            v.active_after_purge += 1;
            format!(
                "active ({}) {} ms after its purge in the other process ended",
                c.source,
                (c.start_us - p) / 1000
            )
        } else if let Some(f) = inactive_at.get(&c.victim).filter(|f| c.start_us > **f) {
            v.active_after_inactive += 1;
            format!(
                "active ({}) {} ms after the library answered TC_INACTIVE_TOKEN for it",
                c.source,
                (c.start_us - f) / 1000
            )
        } else if c.start_us > revoked_end + lifetime {
            if stale {
                v.stale_unknowable += 1;
                continue;
            }
            v.active_after_lifetime += 1;
            format!(
                "active ({}) {} ms after its revocation, past the cache's lifetime",
                c.source,
                (c.start_us - revoked_end) / 1000
            )
        } else {
            v.active_within_lifetime += 1;
            continue;
        };
        if stale {
            v.wrong_stale += 1;
        }
        example(&mut v.examples, &victims[c.victim], c, &why);
    }
    v
}

fn example(examples: &mut Vec<String>, victim: &Victim, c: &VictimCall, why: &str) {
    if examples.len() < 20 {
        let s = format!(
            "WRONG victim {} (identity {}): {} {why} (call {}..{} µs)",
            victim.token,
            victim.identity,
            c.status.name(),
            c.start_us,
            c.end_us
        );
        eprintln!("soak: {s}");
        examples.push(s);
    }
}

/// The final pass, faults cleared: every purged victim, and every victim revoked longer ago
/// than the cache's lifetime, checks inactive now.
pub(super) fn final_pass(
    fleet: &Fleet,
    checker: &Checker,
    timeout: Duration,
    verdict: &mut FleetVerdict,
) {
    let victims = fleet.victims.read().unwrap();
    let revoked = fleet.revoked.lock().unwrap().clone();
    let mut purged = vec![false; victims.len()];
    for p in fleet.purges.lock().unwrap().iter() {
        if p.purged.ok && p.purged.reached {
            for &v in &p.victims {
                purged[v] = true;
            }
        }
    }
    let now = unix_us();
    let lifetime = (timeout + JOIN_GRACE).as_micros() as u64;
    for (i, victim) in victims.iter().enumerate() {
        let due = match revoked[i] {
            Some((_, ended)) => purged[i] || now > ended + lifetime,
            None => false,
        };
        if !due {
            continue;
        }
        let (st, doc) = checker.check(&victim.token);
        if st != tc_status::TC_INACTIVE_TOKEN {
            let mut s = format!("victim {}: {} {}", victim.token, st.name(), doc);
            s.truncate(300);
            verdict.final_wrong.push(s);
        }
    }
}
