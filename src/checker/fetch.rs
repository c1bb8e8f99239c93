//! Fetching a token's introspection for the cache, and what a fresh answer means for the stale
//! area.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;

use super::secs_until;
use crate::cache::{self, CacheKey, Entry, Fetched};
use crate::clock::Moment;
use crate::introspection::AuthClient;
use crate::log::log_warn;
use crate::model::{Source, TokenInfo};
use crate::process;
use crate::status::Error;

/// The fetch of a token's introspection: `timeout` is the cache's, `wait` the fetch's bound.
pub(super) fn introspect_fetch(
    client: Arc<AuthClient>,
    token: String,
    timeout: Duration,
    wait: Duration,
) -> impl FnOnce() -> futures::future::BoxFuture<'static, Result<Fetched, Error>> + Send + 'static {
    move || {
        async move {
            let started = Moment::now();
            let deadline = Instant::now() + wait;
            let mut intro = client.introspect(&token, deadline).await?;
            if intro
                .extra
                .as_deref()
                .is_some_and(|e| mentions_token(e, &token))
            {
                // A hostile or broken server echoed the token: it must not reach the cache.
                log_warn!(
                    "the introspection answer holds the token; its other members are dropped"
                );
                intro.extra = None;
            }
            let info = TokenInfo::new(intro);
            // Active: never past the token's exp. Inactive: `timeout` (bounded apart).
            let ttl = match info.exp() {
                Some(exp) if info.active() => timeout.min(secs_until(exp)),
                _ => timeout,
            };
            let identities = info.identity_filter();
            Ok(Fetched {
                value: cache::Value::Introspection(Arc::new(info)),
                ttl,
                identities,
                started,
            })
        }
        .boxed()
    }
}

/// Whether `text` (JSON) holds the token, as is or JSON-escaped.
fn mentions_token(text: &str, token: &str) -> bool {
    let escaped = serde_json::to_string(token).unwrap_or_default();
    text.contains(token) || text.contains(escaped.trim_matches('"'))
}

/// What a fresh answer means for the stale area (`stale_if_error_s`): a positive one from the
/// network is kept for outages; an inactive one, from any layer, makes the area forget the
/// token at once (it was revoked: a later outage must not bring the old answer back).
pub(super) fn note_for_outages(
    process: &process::Process,
    key: CacheKey,
    entry: &Entry,
    source: Source,
    timeout: Duration,
    stale_for: Duration,
) {
    if entry.is_negative() {
        process.stale.forget(&key);
    } else if !stale_for.is_zero() && fresh(source) {
        process.stale.remember(key, entry, timeout, stale_for);
    }
}

/// Whether an answer came from the network for this call (not from a cache).
pub(super) fn fresh(source: Source) -> bool {
    matches!(source, Source::Network | Source::Coalesced)
}
