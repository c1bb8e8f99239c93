//! Fleet-wide purges in a shared backend: a bounded purge log, and tombstones for stale answers.
//!
//! **The purge log** is one backend key (`<prefix>purges`) read with every value (one round trip:
//! pipelined, or a multi-get). It holds a sequence number and the fleet's recent purges, as
//! text: `n<seq>;` then records `<kind><16 hex>#<seq>@<unix ms>;`:
//! - `i<identity bits>`: `tc_purge_identity` (the identity's bits in an entry's
//!   [`IdentityFilter`]);
//! - `t<token id>`: `tc_purge` (the first 16 hex digits of the token's public id);
//! - `a0000000000000000`: everything (what the log collapses to when it would grow too large).
//!
//! Every value written to the backend carries, sealed, the log's sequence number as this process
//! last read it before the fetch started. A value is refused (a miss) when a record with a higher
//! number covers it: the purge came after the fetch started, or the fetch could not know of it.
//! No clocks are compared. So a purge costs one write however many tokens an identity has,
//! reaches values written by fetches that were in flight during it, and leaves nothing to prune:
//! records older than the cache's `timeout` (plus [`CLOCK_MARGIN`], by the writers' clocks) are
//! dropped by the next write, and a log that would exceed its size collapses into one `a` record
//! (everything written before it is fetched again: correct, only slower). The sequence number is
//! at least the writer's unix time in ms, so it never goes back even if the log was lost. The
//! update is atomic on the server (a Lua script on Redis, compare-and-swap on Memcached).
//!
//! **Tombstones** (`<prefix>purged:t:<token id>`, `<prefix>purged:i:<identity hash>`) carry the
//! purge's time for as long as a stale answer may be served (`timeout` plus the longest
//! `stale_if_error_s`): a process about to serve a stale answer reads them, so a token purged in
//! another process of the fleet is never served stale. Those compare clocks: a stale answer
//! fetched less than [`CLOCK_MARGIN`] before a purge's time counts as purged.

use std::time::Duration;

use crate::model::IdentityFilter;

/// How far apart the fleet's clocks may be (tombstones, and the age at which records are
/// dropped).
pub(crate) const CLOCK_MARGIN: Duration = Duration::from_secs(2);
/// The size the purge log collapses at (a backend that refuses smaller values, such as a
/// Memcached with a small item size, collapses it sooner).
pub(crate) const MAX_LOG_BYTES: usize = 64 * 1024;
/// How long a tombstone outlives its purge, besides the cache's timeout: the longest
/// `stale_if_error_s` there can be.
pub(crate) const TOMBSTONE_EXTRA: Duration = Duration::from_secs(86_400);
/// How long the purge log lives after its last write: far longer than any entry, so its
/// sequence number is never lost while a value that carries an older one lives.
pub(crate) const LOG_LIFETIME: Duration = Duration::from_secs(7 * 86_400);

/// What a record covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Identity(u64),
    Token(u64),
    All,
}

/// The purge log, as read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PurgeLog {
    /// The log's sequence number (that of its newest record).
    pub seq: u64,
    records: Vec<(Scope, u64)>,
}

/// The record head (kind and 16 hex digits) of a purge of everything.
pub fn all_head() -> String {
    format!("a{:016x}", 0)
}

/// The record head of `tc_purge_identity(identity)`.
pub fn identity_head(identity: &str) -> String {
    format!("i{:016x}", IdentityFilter::of([identity]).0)
}

/// The record head of `tc_purge` of the token with this public id.
pub fn token_head(public_id: &str) -> String {
    format!("t{}", &public_id[..16])
}

fn token_bits(public_id: &str) -> u64 {
    u64::from_str_radix(&public_id[..16], 16).unwrap_or(0)
}

impl PurgeLog {
    /// Reads a log; records that do not parse are skipped (a log written by a newer version).
    pub fn parse(bytes: &[u8]) -> PurgeLog {
        let text = String::from_utf8_lossy(bytes);
        let mut log = PurgeLog::default();
        for r in text.split(';') {
            if let Some(n) = r.strip_prefix('n') {
                log.seq = log.seq.max(n.parse().unwrap_or(0));
                continue;
            }
            let Some((head, rest)) = r.split_once('#') else {
                continue;
            };
            let Some(seq) = rest
                .split_once('@')
                .and_then(|(q, _)| q.parse::<u64>().ok())
            else {
                continue;
            };
            let (Some(kind), Some(Ok(bits))) = (
                head.chars().next(),
                head.get(1..).map(|h| u64::from_str_radix(h, 16)),
            ) else {
                continue;
            };
            let scope = match kind {
                'i' => Scope::Identity(bits),
                't' => Scope::Token(bits),
                'a' => Scope::All,
                _ => continue,
            };
            log.seq = log.seq.max(seq);
            log.records.push((scope, seq));
        }
        log
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether a purge recorded after sequence number `seq` covers a value of the token with
    /// this public id and these identities.
    pub fn covers(&self, identities: IdentityFilter, public_id: &str, seq: u64) -> bool {
        let token = token_bits(public_id);
        self.records.iter().any(|&(scope, at)| {
            at > seq
                && match scope {
                    Scope::All => true,
                    Scope::Token(t) => t == token,
                    Scope::Identity(bits) => identities.0 & bits == bits,
                }
        })
    }
}

/// The log after recording a purge (`head`, see [`identity_head`] and friends) at `now_ms`:
/// the next sequence number (at least `now_ms`), records of `cutoff_ms` or later kept, the new
/// one appended; over `max_bytes`, one `a` record instead (it covers everything the dropped
/// records did). What a backend without server-side scripts stores by compare-and-swap.
pub fn updated(
    current: &[u8],
    head: &str,
    cutoff_ms: u64,
    max_bytes: usize,
    now_ms: u64,
) -> Vec<u8> {
    let seq = (PurgeLog::parse(current).seq + 1).max(now_ms);
    let text = String::from_utf8_lossy(current);
    let mut out = format!("n{seq};");
    for r in text.split(';').filter(|r| r.contains('#')) {
        let keep = r
            .rsplit_once('@')
            .and_then(|(_, at)| at.parse::<u64>().ok())
            .is_some_and(|at| at >= cutoff_ms);
        if keep {
            out.push_str(r);
            out.push(';');
        }
    }
    out.push_str(&format!("{head}#{seq}@{now_ms};"));
    if out.len() > max_bytes {
        return format!("n{seq};{}#{seq}@{now_ms};", all_head()).into_bytes();
    }
    out.into_bytes()
}

/// The same as a Redis script: KEYS[1] the log; ARGV: the record's head, the cutoff, the
/// maximum size, the log's lifetime in ms, now in ms. Returns the new sequence number.
pub(crate) const REDIS_SCRIPT: &str = r"
local cur = redis.call('GET', KEYS[1]) or ''
local seq = 0
for n in string.gmatch(cur, 'n(%d+);') do seq = math.max(seq, tonumber(n)) end
for q in string.gmatch(cur, '#(%d+)@') do seq = math.max(seq, tonumber(q)) end
local now = tonumber(ARGV[5])
seq = math.max(seq + 1, now)
local out = {'n' .. seq .. ';'}
local cutoff = tonumber(ARGV[2])
for rec in string.gmatch(cur, '[^;]+') do
  local at = tonumber(string.match(rec, '#%d+@(%d+)$'))
  if at and at >= cutoff then out[#out + 1] = rec .. ';' end
end
out[#out + 1] = ARGV[1] .. '#' .. seq .. '@' .. ARGV[5] .. ';'
local s = table.concat(out)
if #s > tonumber(ARGV[3]) then
  s = 'n' .. seq .. ';a0000000000000000#' .. seq .. '@' .. ARGV[5] .. ';'
end
redis.call('SET', KEYS[1], s, 'PX', ARGV[4])
return seq
";

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const OTHER: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

    fn ids(list: &[&str]) -> IdentityFilter {
        IdentityFilter::of(list.iter().copied())
    }

    #[test]
    fn records_cover_what_they_name_written_before_them() {
        let log = updated(b"", &identity_head("alice"), 0, 10_000, 1_000);
        let log = updated(&log, &token_head(TOKEN), 0, 10_000, 1_000);
        let parsed = PurgeLog::parse(&log);
        assert_eq!(parsed.seq, 1_001, "at least now, and one more each time");
        let (alice, bob) = (ids(&["alice", "alice2"]), ids(&["bob"]));
        assert!(parsed.covers(alice, OTHER, 999));
        assert!(
            !parsed.covers(alice, OTHER, 1_000),
            "written after the purge"
        );
        assert!(!parsed.covers(bob, OTHER, 0));
        assert!(parsed.covers(bob, TOKEN, 1_000));
        assert!(!parsed.covers(bob, TOKEN, 1_001));
        assert!(PurgeLog::parse(b"").is_empty());
        assert!(PurgeLog::parse(b"garbage;x#@;i12#zz@1;n;").is_empty());
    }

    #[test]
    fn updates_drop_old_records_and_collapse_when_too_large() {
        let a = updated(b"", &identity_head("a"), 0, 1000, 100);
        let b = updated(&a, &identity_head("b"), 150, 1000, 200);
        let parsed = PurgeLog::parse(&b);
        assert_eq!(
            parsed.records.len(),
            1,
            "a's record is older than the cutoff"
        );
        assert_eq!(parsed.seq, 200);
        let c = updated(&b, &token_head(TOKEN), 0, 1000, 200);
        assert_eq!(
            PurgeLog::parse(&c).seq,
            201,
            "never back, however the clocks go"
        );
        let full = updated(&c, &identity_head("c"), 0, 60, 300);
        assert_eq!(
            String::from_utf8(full.clone()).unwrap(),
            format!("n300;{}#300@300;", all_head())
        );
        assert!(PurgeLog::parse(&full).covers(ids(&["zed"]), OTHER, 299));
    }
}
