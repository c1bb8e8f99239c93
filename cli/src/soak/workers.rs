//! The load: the operations, in their proportions, and the worker threads that run and judge
//! them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use fake_globus::FakeGlobus;
use serde_json::json;
use tokenchecker::tc_status;

use super::ffi::Checker;
use super::fleet::{source_name, Fleet, VictimCall};
use super::judge::{clip, judge, source_of, Excuse, Expect, Verdict};
use super::purger::unix_us;
use super::rng::Rng;
use super::tally::{Run, Tally};
use super::tokens::{
    identity_of, pool_token, refused_kinds, valid_spec, GROUP, GROUPS, GROUP_OTHER, GROUP_PENDING,
    IDENTITY, POOL,
};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Op {
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
    /// `--fleet`: a check of a victim (see `fleet`), judged at the end.
    Victim,
}

pub(super) const OPS: [Op; 11] = [
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
    Op::Victim,
];

impl Op {
    pub(super) fn name(self) -> &'static str {
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
            Op::Victim => "check_victim",
        }
    }
    /// Weights out of 1000 (victims are chosen apart, see [`worker`]).
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

pub(super) fn worker(
    n: usize,
    seed: u64,
    ops: Vec<Op>,
    checker: Arc<Checker>,
    fake: Arc<FakeGlobus>,
    run: Arc<Run>,
    fleet: Option<Arc<Fleet>>,
) -> Tally {
    let mut rng = Rng::new(seed ^ (n as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    let mut t = Tally::new();
    let refused = refused_kinds();
    let mut fresh = 0u64;
    while !run.stop.load(Ordering::Relaxed) {
        // With --fleet, 15% of the calls check a victim (all of them with --ops check_victim).
        let victims_only = ops == [Op::Victim];
        let mut victim = None;
        if let Some(fleet) = &fleet {
            if (ops.is_empty() || ops.contains(&Op::Victim))
                && (victims_only || rng.below(100) < 15)
            {
                victim = fleet.pick(&mut rng);
            }
        }
        let mut op = Op::Victim;
        if victim.is_none() {
            if victims_only {
                // No victim yet.
                std::thread::sleep(std::time::Duration::from_millis(5));
                continue;
            }
            op = Op::pick(rng.next());
            while !ops.is_empty() && !ops.contains(&op) {
                op = Op::pick(rng.next());
            }
        }
        let i = rng.below(POOL as u64) as usize;
        let token = pool_token(i);
        let id = identity_of(i);
        let my_group = GROUPS[i % GROUPS.len()];
        let mut cleanup: Option<String> = None;

        let start = Instant::now();
        let start_us = unix_us();
        let (expect, st, doc) = match op {
            Op::Victim => {
                let (v, tok, vid) = victim.take().expect("a victim was picked");
                let (st, doc) = checker.check(&tok);
                let end_us = unix_us();
                t.victim_calls.push(VictimCall {
                    victim: v,
                    start_us,
                    end_us,
                    status: st,
                    source: source_name(source_of(&doc)),
                });
                // Here only the shape: active with its identity, or inactive. When, at the end.
                if st == tc_status::TC_INACTIVE_TOKEN {
                    (Expect::status(st), st, doc)
                } else {
                    (Expect::ok(vid), st, doc)
                }
            }
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
        if st == tc_status::TC_PANIC
            || (!doc.is_empty() && serde_json::from_str::<serde_json::Value>(&doc).is_err())
        {
            t.malformed += 1;
        }
        match judge(&expect, st, &doc) {
            Verdict::Correct => {
                t.per_op[k][1] += 1;
                if st == tc_status::TC_OK {
                    let src = source_of(&doc);
                    if src == Some("stale")
                        && run.upstream_faults.lock().unwrap().excuse(start, end) == Excuse::None
                    {
                        // Only a failing server may turn stale answers on: not a 429, not a
                        // malformed answer, not load.
                        t.stale_outside_failures += 1;
                        run.wrong.fetch_add(1, Ordering::Relaxed);
                        run.example(format!(
                            "WRONG: a stale answer to {} outside any server failure: {}",
                            op.name(),
                            clip(&doc)
                        ));
                    }
                    if let Some(src) = src {
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
                        match op {
                            Op::FreshValid | Op::FreshUnknown => "a fresh token",
                            Op::Victim => "a victim token",
                            _ => "a pool token",
                        },
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
