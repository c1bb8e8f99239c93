//! The end of a soak: the human summary on standard output and the JSON report (`--report`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use fake_globus::Counters;
use serde_json::json;
use tokenchecker::tc_status;

use super::ffi::library_stats;
use super::fleet::FleetVerdict;
use super::options::{Backend, Options};
use super::rss::mib;
use super::tally::{Run, Tally};
use super::workers::OPS;

/// Resident set sizes, bytes.
pub(super) struct RssFigures {
    pub(super) start: u64,
    /// The baseline for the growth bound (the start when the run was too short to warm up).
    pub(super) after_warm_up: u64,
    pub(super) end: u64,
    pub(super) max: u64,
}

/// `--fleet`: the victims' verdict and the proxy trap's count.
pub(super) struct FleetFigures {
    pub(super) verdict: FleetVerdict,
    /// Connections the proxy trap accepted (any is a request that leaked to the proxy).
    pub(super) proxy_connections: u64,
}

/// What a soak saw, once the load has stopped and the final pass is done.
pub(super) struct Outcome<'a> {
    pub(super) options: &'a Options,
    pub(super) run: &'a Run,
    pub(super) total: Tally,
    pub(super) load_time: Duration,
    /// Pool tokens the final pass (no faults, Redis up) did not check correctly.
    pub(super) final_wrong: Vec<String>,
    pub(super) rss: RssFigures,
    /// The fake's request counters.
    pub(super) fake: Counters,
    /// Calls still running long after the load stopped: they never got an answer.
    pub(super) unanswered: u64,
    pub(super) fleet: Option<FleetFigures>,
}

impl Outcome<'_> {
    /// Prints the summary and writes the report when asked: whether the soak passed.
    pub(super) fn report(self) -> Result<bool, String> {
        let Outcome {
            options: o,
            run,
            total,
            load_time,
            final_wrong,
            rss,
            fake,
            unanswered,
            fleet,
        } = self;
        let RssFigures {
            start: rss_at_start,
            after_warm_up: rss_base,
            end: rss_end,
            max: rss_max,
        } = rss;
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
        // Lost: no answer at all, no clean answer (a panic, a document that is not JSON), or
        // TC_AUTH_UNAVAILABLE where Globus Auth could have answered.
        let lost = unanswered + total.malformed + total.avoidable;
        let fleet_ok = fleet
            .as_ref()
            .is_none_or(|f| f.verdict.passed() && f.proxy_connections == 0);
        let passed = total.wrong == 0
            && lost == 0
            && total.stale_outside_failures == 0
            && final_wrong.is_empty()
            && rss_ok
            && fleet_ok;
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
            "lost_requests": {"total": lost, "unanswered": unanswered,
                              "malformed": total.malformed, "avoidable_failures": total.avoidable},
            "stale_outside_server_failures": total.stale_outside_failures,
            "brownouts": run.brownouts.load(Ordering::Relaxed),
            "rate_limits": run.rate_limits.load(Ordering::Relaxed),
            "fleet": fleet.as_ref().map(|f| {
                let mut v = f.verdict.to_json();
                v["proxy_connections"] = f.proxy_connections.into();
                v
            }),
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
            "fake_counters": {"introspect": fake.introspect,
                              "dependent_token": fake.dependent_token,
                              "groups": fake.groups},
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
        println!(
            "lost requests    {lost} (no answer {unanswered}, no clean answer {}, avoidable {})",
            total.malformed, total.avoidable
        );
        if let Some(f) = &fleet {
            let v = &f.verdict;
            println!(
                "fleet            {} brownouts, {} rate limits (429); {} stale answers outside server failures",
                run.brownouts.load(Ordering::Relaxed),
                run.rate_limits.load(Ordering::Relaxed),
                total.stale_outside_failures
            );
            println!(
                "  victims        {} tokens in {} batches, {} checks ({} after their revocation, {} after their purge, {} of these unavailable: no stale answer in a brownout); purges by the other process: {} tokens, {} identities ({} did not reach the backend; longest {:.1} ms)",
                v.victims,
                v.batches,
                v.victim_calls,
                v.calls_after_revocation,
                v.calls_after_purge,
                v.unavailable_after_purge,
                v.token_purges,
                v.identity_purges,
                v.purges_not_reached,
                v.longest_purge_ms
            );
            println!(
                "  allowed        {} active within the cache's lifetime after the revocation, {} joined a fetch in flight at the purge, {} stale before the library could know (of {} stale answers to victims, {} for never-revoked ones; {} stale answers served in all)",
                v.active_within_lifetime,
                v.joined_before_purge,
                v.stale_unknowable,
                v.stale_answers,
                v.stale_for_active,
                lib["stale_served"]
            );
            println!(
                "  WRONG          {} active after a purge, {} active after an inactive answer, {} active past the cache's lifetime (of which stale {}), {} inactive before the revocation; final pass {}",
                v.active_after_purge,
                v.active_after_inactive,
                v.active_after_lifetime,
                v.wrong_stale,
                v.inactive_before_revocation,
                if v.final_wrong.is_empty() {
                    "all inactive".to_string()
                } else {
                    format!("{} wrong", v.final_wrong.len())
                }
            );
            for w in v.final_wrong.iter().take(10) {
                println!("  final pass: {w}");
            }
            for e in &v.purger_failures {
                println!("  purger failure: {e}");
            }
            println!(
                "  proxy          {} connections to the proxy trap{}",
                f.proxy_connections,
                if f.proxy_connections == 0 {
                    ""
                } else {
                    " (requests leaked to HTTP(S)_PROXY)"
                }
            );
        }
        if o.backend != Backend::Memory {
            println!(
                "cache server     {} kills/restarts, {:.1} s down in total",
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
        Ok(passed)
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
