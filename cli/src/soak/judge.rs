//! What each call must answer, the verdict on what it did answer, and the fault windows that
//! excuse a `TC_AUTH_UNAVAILABLE`.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokenchecker::tc_status;

use super::tokens::IDENTITY;

/// What one call must answer.
pub(super) struct Expect {
    status: tc_status,
    /// On TC_OK: the caller's identity (sub, and the only member of `identities`).
    sub: Option<String>,
    /// On TC_OK from tc_authorize: the matched principal.
    pub(super) matched: Option<String>,
    /// tc_try_check: TC_WOULD_BLOCK is fine too.
    pub(super) may_block: bool,
}

impl Expect {
    pub(super) fn status(status: tc_status) -> Expect {
        Expect {
            status,
            sub: None,
            matched: None,
            may_block: false,
        }
    }
    pub(super) fn ok(sub: String) -> Expect {
        Expect {
            sub: Some(sub),
            ..Expect::status(tc_status::TC_OK)
        }
    }
}

pub(super) enum Verdict {
    Correct,
    Unavailable,
    Wrong { positive: bool, why: String },
}

pub(super) fn judge(e: &Expect, st: tc_status, doc: &str) -> Verdict {
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
pub(super) fn source_of(doc: &str) -> Option<&str> {
    let i = doc.rfind("\"source\":\"")? + "\"source\":\"".len();
    let rest = &doc[i..];
    Some(&rest[..rest.find('"')?])
}

pub(super) fn clip(s: &str) -> String {
    if s.len() <= 300 {
        return s.to_string();
    }
    let mut end = 300;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Windows during which Globus Auth was made to fail: `TC_AUTH_UNAVAILABLE` is excused for a
/// call that overlapped one.
#[derive(Default)]
pub(super) struct FaultLog {
    /// (start, end); end None while the fault is on.
    pub(super) windows: Vec<(Instant, Option<Instant>)>,
}

/// Concurrent misses share one fetch (src/cache/flight.rs): a call that starts just after a
/// fault ended may join a fetch that started during it, and share its failure. A fetch that met
/// a fault ends quickly (a 503, a reset, a malformed answer), so two seconds are plenty.
const JOINED_FETCH_GRACE: Duration = Duration::from_secs(2);

#[derive(PartialEq, Eq)]
pub(super) enum Excuse {
    /// The call overlapped an auth fault.
    During,
    /// The call started within JOINED_FETCH_GRACE after one ended.
    JustAfter,
    None,
}

impl FaultLog {
    pub(super) fn excuse(&self, start: Instant, end: Instant) -> Excuse {
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
