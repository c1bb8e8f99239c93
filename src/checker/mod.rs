//! The checker: checks tokens, authorizes callers, hands out dependent tokens, purges.
//!
//! Every operation is an async function run on the process's runtime; the blocking entry points
//! first try the in-process cache without touching the runtime at all (the hot path), then fall
//! back to `process::block_on`. Each call has one deadline (`call_timeout_ms`), set where it
//! enters; every stage (introspection, grant, Groups, their retries) gets what is left of it.
//!
//! Here: creation, checks (the hot path, then introspection through the cache) and purges;
//! `grants.rs`: dependent tokens and groups; `authorize.rs`: the allowed-principals rules;
//! `fetch.rs`: an introspection fetched for the cache, and the stale area's part in it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use crate::auth_state::{validate, AuthState, Groups};
use crate::cache::{
    self, CacheKey, CacheStore, Entry, KeyHasher, Kind, LocalId, LocalKey, TokenIds,
};
use crate::clock::{now_unix, Moment};
use crate::config::{Config, FetchGroups};
use crate::introspection::AuthClient;
use crate::log::{log_error, log_info, log_warn};
use crate::model::Source;
use crate::process;
use crate::runtime;
use crate::stats::stats;
use crate::status::{tc_status, Cause, Error};

mod authorize;
mod fetch;
mod grants;

pub use authorize::Authorization;
use fetch::{fresh, introspect_fetch, note_for_outages};
use grants::local_groups;

/// Dependent tokens are dropped from the cache this long before they expire.
const DEPENDENT_TOKEN_MARGIN_S: i64 = 60;
/// A hit of the hot path, with what a further lookup of the same token needs (its id, the
/// clock reading, the process state) so that it hashes, reads the clock and loads the state once.
pub(super) struct LocalHit {
    pub state: Result<AuthState, Error>,
    pub id: LocalId,
    pub now: Moment,
    pub process: arc_swap::Guard<Arc<process::Process>>,
}

/// Tells checkers' rules apart (see `Config::rules_id`); 0 is never given.
static NEXT_RULES_ID: AtomicU64 = AtomicU64::new(1);
/// What creation introspects to learn whether the client credentials are accepted.
const CREDENTIAL_PROBE_TOKEN: &str = "tokenchecker-credential-probe";
/// How many tokens' "the grant was asked again" marks a checker keeps (see
/// [`Checker::dependent_token_async`]).
const REGRANT_MARKS: usize = 10_000;

/// What a checker keeps per process generation (see `process`): its HTTP client (connection
/// pool, request slots) and its marks of re-asked grants. A forked child builds its own on first
/// use and abandons the inherited one.
struct Net {
    generation: u64,
    client: Arc<AuthClient>,
    /// Tokens whose dependent-token grant was asked again because it lacked a requested scope
    /// (at most once per token per cache lifetime), and when.
    regranted: quick_cache::sync::Cache<LocalId, Moment>,
}

/// A configured token checker. Cheap to share: wrap it in an `Arc` and use it from any thread.
pub struct Checker {
    config: Config,
    /// Built on first use in each process generation; shared with the checkers derived from
    /// this one (one client, one connection pool, one set of request slots).
    net: Arc<ArcSwapOption<Net>>,
    hasher: KeyHasher,
    /// How long one caller waits for one request's answer (its retries included).
    wait: Duration,
    /// The "no Groups dependency" warning was logged (once per checker).
    groups_warned: AtomicBool,
}

impl Checker {
    /// Builds a checker from a JSON configuration (blocking: it may probe the credentials).
    pub fn from_json(config_json: &str) -> Result<Checker, Error> {
        Checker::new(Config::from_json(config_json)?)
    }

    /// Builds a checker. With `config.cache` set, the process-wide cache is replaced, but only
    /// once everything else succeeded: a failed creation leaves the current cache as it was.
    pub fn new(mut config: Config) -> Result<Checker, Error> {
        // This checker's rules, fixed from now on: its own id (see `Config::rules_id`).
        config.rules_id = NEXT_RULES_ID.fetch_add(1, Ordering::Relaxed);
        // Built now to refuse a configuration it cannot work with; used for the probe only.
        let probe_client = AuthClient::new(&config)?;
        let hasher = KeyHasher::new(&config.client_id, &config.client_secret, &config.auth_url);
        let per_try = config.connect_timeout + config.request_timeout;
        let wait = per_try * (config.max_retries + 1) + Duration::from_secs(2) * config.max_retries;
        let store = config.cache.as_ref().map(CacheStore::new).transpose()?;
        let checker = Checker {
            config,
            net: Arc::new(ArcSwapOption::empty()),
            hasher,
            wait,
            groups_warned: AtomicBool::new(false),
        };
        for (key, url) in [
            ("auth_url", &checker.config.auth_url),
            ("groups_url", &checker.config.groups_url),
        ] {
            if checker.config.allow_insecure_http && url.starts_with("http://") {
                log_warn!(
                    "creating a checker: {key} is plain http:// (allow_insecure_http): the client \
                     secret and users' tokens travel in clear to {url}"
                );
            }
        }
        if checker.config.verify_credentials {
            // On a runtime that ends with the probe, with a client that ends with it: a process
            // that creates checkers and then forks has no runtime thread or pooled connection
            // at the fork.
            let deadline = Instant::now() + wait.min(checker.config.call_timeout);
            let probe = runtime::block_on_temporary(async move {
                probe_client
                    .introspect(CREDENTIAL_PROBE_TOKEN, deadline)
                    .await
            })?;
            match probe {
                Err(e) if e.status == tc_status::TC_CREDENTIALS_REJECTED => {
                    log_error!("creating a checker: {e}");
                    return Err(e);
                }
                Err(e) => log_warn!(
                    "creating a checker: could not verify the client credentials ({e}); \
                     checks will report TC_AUTH_UNAVAILABLE until the server answers"
                ),
                // An unreachable server must not stop a service from starting: checks will
                // report TC_AUTH_UNAVAILABLE until it answers.
                _ => {}
            }
        }
        if let Some(store) = store {
            log_info!("a new cache_config replaces the process-wide cache");
            process::install_cache(store);
        }
        log_info!(
            "checker created for client {} (auth {}, fetch_groups {:?})",
            checker.config.client_id,
            checker.config.auth_url,
            checker.config.fetch_groups
        );
        Ok(checker)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A checker with other rules (`rules_json`: `expected_scopes`, `scope_match`,
    /// `expected_audience`, `leeway_s`) that shares this one's HTTP client, connection pool and
    /// request slots (`max_concurrent_requests` stays one cap), and the process's cache: a
    /// cached answer serves both. Never blocks, never probes, never replaces the cache.
    pub fn derive(&self, rules_json: &str) -> Result<Checker, Error> {
        let mut config = self.config.with_rules(rules_json)?;
        config.rules_id = NEXT_RULES_ID.fetch_add(1, Ordering::Relaxed);
        Ok(Checker {
            config,
            net: self.net.clone(),
            hasher: self.hasher.clone(),
            wait: self.wait,
            groups_warned: AtomicBool::new(self.groups_warned.load(Ordering::Relaxed)),
        })
    }

    /// This process generation's client and marks (built on first use after creation or a
    /// fork; what a parent process built is abandoned, never used or dropped here).
    fn net(&self) -> Result<Arc<Net>, Error> {
        let generation = process::generation();
        loop {
            let current = self.net.load_full();
            if let Some(net) = current.as_ref().filter(|n| n.generation == generation) {
                return Ok(net.clone());
            }
            let fresh = Arc::new(Net {
                generation,
                client: Arc::new(AuthClient::new(&self.config)?),
                regranted: quick_cache::sync::Cache::new(REGRANT_MARKS),
            });
            let previous = self.net.compare_and_swap(&current, Some(fresh.clone()));
            if previous.as_ref().map(Arc::as_ptr) == current.as_ref().map(Arc::as_ptr) {
                // Inherited across a fork: its pool and slots belong to the parent's threads.
                std::mem::forget(current);
                return Ok(fresh);
            }
        }
    }

    /// This process generation's HTTP client.
    fn client(&self) -> Result<Arc<AuthClient>, Error> {
        Ok(self.net()?.client.clone())
    }

    /// The deadline of a call that starts now.
    fn deadline(&self) -> Instant {
        Instant::now() + self.config.call_timeout
    }

    /// How long the next stage of a call may take: what is left before `deadline`, at most
    /// one stage's worth; an error once nothing is left.
    fn stage_wait(&self, deadline: Instant) -> Result<Duration, Error> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::unavailable(format!(
                "no answer within the call's deadline (call_timeout_ms = {})",
                self.config.call_timeout.as_millis()
            )));
        }
        Ok(left.min(self.wait))
    }

    /// Both ids of an acceptable token (the backend's needs a BLAKE3 hash: misses, purges).
    fn token_id(&self, token: &str) -> Result<TokenIds, Error> {
        self.valid_token(token)?;
        Ok(self.hasher.token_id(token))
    }

    /// The in-process id of an acceptable token: all the hot path hashes.
    #[inline]
    fn local_id(&self, token: &str) -> Result<LocalId, Error> {
        self.valid_token(token)?;
        Ok(self.hasher.local_id(token))
    }

    fn valid_token(&self, token: &str) -> Result<(), Error> {
        if token.is_empty() {
            return Err(Error::invalid_argument("the token is empty"));
        }
        if token.len() > self.config.max_token_bytes {
            return Err(Error::invalid_argument(format!(
                "the token is {} bytes long; the limit is {} (max_token_bytes)",
                token.len(),
                self.config.max_token_bytes
            )));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::invalid_argument(
                "the token contains characters a bearer token cannot hold (space, control or non-ASCII)",
            ));
        }
        Ok(())
    }

    // ---- checking -------------------------------------------------------------------------

    /// Checks a token; blocks the calling thread until it knows (never from a runtime thread).
    pub fn check(&self, token: &str) -> Result<AuthState, Error> {
        stats().checks.inc();
        if let Some(result) = self.lookup_local(token)? {
            return result;
        }
        process::block_on(self.check_inner(token, self.deadline()))?
    }

    /// The rest of [`Self::check`] after [`Self::try_check`] missed (counted there): blocks.
    pub fn check_uncached(&self, token: &str) -> Result<AuthState, Error> {
        process::block_on(self.check_inner(token, self.deadline()))?
    }

    /// Answers from the in-process cache only: `Ok(None)` when the answer needs the network.
    pub fn try_check(&self, token: &str) -> Result<Option<Result<AuthState, Error>>, Error> {
        stats().checks.inc();
        self.lookup_local(token)
    }

    /// The hot path: the whole check from the in-process layer, without touching the runtime.
    #[inline]
    fn lookup_local(&self, token: &str) -> Result<Option<Result<AuthState, Error>>, Error> {
        Ok(self.lookup_local_hit(token)?.map(|hit| hit.state))
    }

    /// [`Self::lookup_local`], with what a further lookup of the same token needs.
    pub(super) fn lookup_local_hit(&self, token: &str) -> Result<Option<LocalHit>, Error> {
        let id = self.local_id(token)?;
        let process = process::get();
        let store = &process.cache;
        // One clock read serves the entry's expiry and the answer's age: the coarse clock (an
        // entry may be served a few milliseconds past its expiry; its token's `exp` is still
        // checked in whole seconds).
        let now = Moment::now_coarse();
        let Some((entry, source)) =
            store.get_local_at(&LocalKey::new(Kind::Introspection, id), now)
        else {
            return Ok(None);
        };
        if !self.config.refresh_ahead.is_zero()
            && entry.expires_at.saturating_duration_since(now) < self.config.refresh_ahead
        {
            self.refresh_ahead(token, &entry);
        }
        let groups = match (self.config.fetch_groups, &entry.value) {
            (FetchGroups::Eager, cache::Value::Introspection(info)) => {
                match local_groups(store, info, id, now) {
                    Some(g) => Groups::Available(g),
                    None => return Ok(None),
                }
            }
            _ => Groups::NotFetched,
        };
        let state = self.state_from(&entry, source, groups, now);
        Ok(Some(LocalHit {
            state,
            id,
            now,
            process,
        }))
    }

    fn state_from(
        &self,
        entry: &Entry,
        source: Source,
        groups: Groups,
        now: Moment,
    ) -> Result<AuthState, Error> {
        let cache::Value::Introspection(info) = &entry.value else {
            return Err(wrong_kind());
        };
        match source {
            Source::Network | Source::Coalesced => {}
            _ if info.active() => stats().hits.inc(),
            _ => stats().negative_hits.inc(),
        }
        validate(&self.config, info, crate::clock::unix_now_coarse())?;
        Ok(AuthState {
            info: info.clone(),
            groups,
            source,
            age: now.saturating_duration_since(entry.fetched_at),
        })
    }

    /// Checks a token on the runtime.
    pub async fn check_async(&self, token: &str) -> Result<AuthState, Error> {
        stats().checks.inc();
        self.check_inner(token, self.deadline()).await
    }

    async fn check_inner(&self, token: &str, deadline: Instant) -> Result<AuthState, Error> {
        let id = self.token_id(token)?;
        let (entry, source) = self.introspection(token, id, deadline).await?;
        let mut state = self.state_from(&entry, source, Groups::NotFetched, Moment::now())?;
        if self.config.fetch_groups == FetchGroups::Eager {
            state.groups = self.groups(token, id, &state.info, deadline).await?;
        }
        Ok(state)
    }

    async fn introspection(
        &self,
        token: &str,
        id: TokenIds,
        deadline: Instant,
    ) -> Result<(Entry, Source), Error> {
        let wait = self.stage_wait(deadline)?;
        let client = self.client()?;
        let token = token.to_owned();
        let process = process::get_arc();
        let store = process.cache.clone();
        let timeout = store.timeout();
        let key = CacheKey::new(Kind::Introspection, id);
        let result = store
            .clone()
            .get_or_fetch(key, wait, introspect_fetch(client, token, timeout, wait))
            .await;
        if let Ok((entry, source)) = &result {
            note_for_outages(
                &process,
                key,
                entry,
                *source,
                timeout,
                self.config.stale_if_error,
            );
        }
        if self.config.stale_if_error.is_zero() {
            return result;
        }
        match result {
            // Only when the server itself failed: never for load shedding here, a caller's own
            // deadline, a malformed answer or a 4xx (a flood of new tokens must not be able to
            // make a revoked one pass).
            Err(e) if e.cause == Cause::Upstream => match self.recall_stale(&store, key).await {
                Some(entry) => {
                    stats().stale_served.inc();
                    log_warn!(
                        "the authorization server is unavailable; serving a stale answer ({e})"
                    );
                    Ok((entry, Source::Stale))
                }
                None => Err(e),
            },
            other => other,
        }
    }

    /// Starts one background refresh of an active token's answer that expires soon (unless one
    /// runs already): steady users never wait for the expiry, and a token found inactive is
    /// answered so at once. Never fails the check that started it.
    #[cold]
    fn refresh_ahead(&self, token: &str, entry: &Entry) {
        if entry.is_negative() {
            return;
        }
        let (Ok(ids), Ok(client)) = (self.token_id(token), self.client()) else {
            return;
        };
        let key = CacheKey::new(Kind::Introspection, ids);
        let process = process::get_arc();
        let store = process.cache.clone();
        if store.is_fetching(&key) {
            return;
        }
        let timeout = store.timeout();
        let wait = self.wait.min(self.config.call_timeout);
        let fetch = introspect_fetch(client, token.to_owned(), timeout, wait);
        let (expiring, stale_for) = (entry.expires_at, self.config.stale_if_error);
        stats().refreshes.inc();
        process::spawn(async move {
            if let Ok((entry, source)) = store.refresh(key, wait, expiring, fetch).await {
                note_for_outages(&process, key, &entry, source, timeout, stale_for);
            }
        });
    }

    /// A remembered answer for `key`, unless a purge in the fleet (a shared backend's
    /// tombstones for the token and its identities) came after it, or the backend cannot say.
    async fn recall_stale(&self, store: &CacheStore, key: CacheKey) -> Option<Entry> {
        let process = process::get_arc();
        let entry = process.stale.recall(&key)?;
        let cache::Value::Introspection(info) = &entry.value else {
            return None;
        };
        let identities = info.identities();
        let purged = store
            .purged_since(
                &key,
                identities.iter().map(String::as_str),
                &entry,
                |prefix, i| self.hasher.identity_tombstone_text(prefix, i),
            )
            .await;
        if purged {
            process.stale.forget(&key);
            return None;
        }
        Some(entry)
    }

    // ---- revocation -----------------------------------------------------------------------

    /// Removes everything cached for one token, from every layer.
    pub fn purge(&self, token: &str) -> Result<(), Error> {
        process::block_on(self.purge_async(token))?
    }

    pub async fn purge_async(&self, token: &str) -> Result<(), Error> {
        let id = self.token_id(token)?;
        let wait = self.stage_wait(self.deadline())?;
        tokio::time::timeout(wait, self.purge_id(id))
            .await
            .map_err(|_| {
                Error::unavailable(format!(
                    "the purge did not finish within {} ms (this process's layers are purged;                      the shared backend may still hold the token's entries until they expire)",
                    wait.as_millis()
                ))
            })
    }

    async fn purge_id(&self, id: TokenIds) {
        let process = process::get_arc();
        // This process's own layers first, so that a purge cut short still holds here.
        process
            .stale
            .forget(&CacheKey::new(Kind::Introspection, id));
        for kind in Kind::ALL {
            process.cache.remove(&CacheKey::new(kind, id)).await;
        }
        let key = CacheKey::new(Kind::Introspection, id);
        if !process.cache.record_token_purge(&key).await {
            log_warn!(
                "purging a token: the shared cache backend did not take the purge record; other \
                 processes may serve the token from their near caches or stale areas until they \
                 expire"
            );
        }
        stats().purges.inc();
    }

    /// Removes everything cached for tokens of one identity (from the in-process layer).
    pub fn purge_identity(&self, identity_id: &str) -> Result<(), Error> {
        if identity_id.is_empty() {
            return Err(Error::invalid_argument("the identity id is empty"));
        }
        let id = identity_id
            .strip_prefix(crate::model::IDENTITY_PREFIX)
            .unwrap_or(identity_id)
            .to_string();
        let process = process::get_arc();
        process.stale.forget_identity(&id);
        let hasher = self.hasher.clone();
        let wait = self.stage_wait(self.deadline())?;
        let fleet_wide = process::block_on(async move {
            let purge = process
                .cache
                .remove_identity(&id, |prefix| hasher.identity_tombstone_text(prefix, &id));
            tokio::time::timeout(wait, purge).await.unwrap_or(false)
        })?;
        stats().purges.inc();
        if !fleet_wide {
            log_warn!(
                "purging an identity: the shared cache backend is unreachable; the purge is \
                 local to this process (other processes keep their entries until they expire)"
            );
        }
        Ok(())
    }
}

/// The time from now until the unix instant `t` (zero when it has passed).
fn secs_until(t: i64) -> Duration {
    Duration::from_secs(t.saturating_sub(now_unix()).max(0) as u64)
}

fn wrong_kind() -> Error {
    Error::new(tc_status::TC_PANIC, "a cache entry of the wrong kind")
}
