//! The process-wide cache shared by every checker.
//!
//! One [`CacheStore`] is current at a time (held by `process`, read without a lock). A checker
//! created with a `cache_config` builds a new store and installs it (the last configuration
//! wins, as in the original); a checker created without one uses whatever is current. In-flight
//! fetches are coalesced per key in the store's [`flight`] table.
//!
//! Backends: the embedded in-memory cache ([`memory`]), or a shared one — Redis ([`redis`]) or
//! Memcached ([`memcached`]) — behind [`shared`]: entries sealed per token ([`sealing`]), one
//! fetch per key for the whole fleet (a lock in the backend), a circuit breaker ([`breaker`]) and
//! an in-process fallback so an unavailable backend never fails a check, and an optional near
//! cache (an in-process layer with a short TTL) in front.

pub(crate) mod backend;
pub(crate) mod breaker;
pub(crate) mod flight;
pub(crate) mod keys;
pub(crate) mod memcached;
pub(crate) mod memory;
pub(crate) mod purges;
pub(crate) mod redis;
pub(crate) mod sealing;
pub(crate) mod shared;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt};

use crate::clock::Moment;
use crate::config::{BackendConfig, CacheConfig, NearCacheConfig};
use crate::model::{DependentToken, GroupList, IdentityFilter, Source, TokenInfo};
use crate::stats::stats;
use crate::status::Error;
pub use keys::{CacheKey, KeyHasher, Kind, LocalId, LocalKey, TokenIds};
use memory::MemoryLayer;
use shared::Shared;

/// What a cache entry holds.
#[derive(Debug, Clone)]
pub enum Value {
    Introspection(Arc<TokenInfo>),
    Groups(Arc<GroupList>),
    DependentTokens(Arc<Vec<DependentToken>>),
}

/// One cached answer and when it was fetched.
#[derive(Debug, Clone)]
pub struct Entry {
    pub value: Value,
    /// When the answer was fetched from the authorization server (for the result's `age`).
    pub fetched_at: Moment,
    pub expires_at: Moment,
    /// The identities of the token the entry belongs to, for purging by identity.
    pub identities: IdentityFilter,
}

impl Entry {
    pub fn new(value: Value, ttl: Duration, identities: IdentityFilter) -> Self {
        let now = Moment::now();
        Entry {
            value,
            fetched_at: now,
            expires_at: now + ttl,
            identities,
        }
    }

    /// An inactive token's entry.
    pub fn is_negative(&self) -> bool {
        matches!(&self.value, Value::Introspection(info) if !info.active())
    }
}

/// A freshly fetched answer and how long it may be cached (zero: not at all).
pub struct Fetched {
    pub value: Value,
    pub ttl: Duration,
    pub identities: IdentityFilter,
    /// When the fetch started (a purge after it must cover the answer, see `purges`).
    pub started: Moment,
}

impl Fetched {
    /// The cache entry of the answer: fetched when its request started, for `ttl` from now.
    pub fn into_entry(self) -> Entry {
        Entry {
            value: self.value,
            fetched_at: self.started,
            expires_at: Moment::now() + self.ttl,
            identities: self.identities,
        }
    }
}

/// One cache configuration, live.
///
/// The embedded backend is one in-process layer. A shared backend (Redis, Memcached) is an
/// optional near cache (in-process, short TTL) in front of the backend, whose entries are sealed
/// (see `sealing`); see `shared` for its outage handling and the fleet-wide fetch lock.
pub struct CacheStore {
    pub config: CacheConfig,
    /// The embedded cache, or the near cache in front of a shared backend.
    local: Option<MemoryLayer>,
    local_source: Source,
    shared: Option<Shared>,
    /// The fetches in progress for this store.
    flights: Arc<flight::Flights>,
}

fn near_layer(near: &Option<NearCacheConfig>, timeout: Duration) -> Option<MemoryLayer> {
    near.as_ref()
        .map(|n| MemoryLayer::new(n.max_entries, n.ttl.min(timeout)))
}

impl CacheStore {
    /// Builds a store. Never connects: a shared backend is reached on first use, so a store can
    /// be built (and a checker created) while the backend is down.
    pub fn new(config: &CacheConfig) -> Result<CacheStore, Error> {
        let (local, local_source, shared) = match &config.backend {
            BackendConfig::Memory(m) => (
                Some(MemoryLayer::new(m.max_entries, config.timeout)),
                Source::Memory,
                None,
            ),
            BackendConfig::Redis(r) => (
                near_layer(&r.shared.near_cache, config.timeout),
                Source::Near,
                Some(Shared::redis(r, config.timeout)?),
            ),
            BackendConfig::Memcached(m) => (
                near_layer(&m.shared.near_cache, config.timeout),
                Source::Near,
                Some(Shared::memcached(m, config.timeout)?),
            ),
        };
        Ok(CacheStore {
            config: config.clone(),
            local,
            local_source,
            shared,
            flights: Default::default(),
        })
    }

    /// How many fetches are running.
    pub fn in_flight(&self) -> usize {
        self.flights.len()
    }

    /// Upper bound of every entry's lifetime.
    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// A lookup in the in-process layers only (never blocks, never touches the network): the
    /// embedded cache or the near cache, and while a shared backend is down, the fallback layer.
    #[inline]
    pub fn get_local(&self, key: &CacheKey) -> Option<(Entry, Source)> {
        self.get_local_at(&key.local(), Moment::now())
    }

    /// [`Self::get_local`] with the current instant already read.
    #[inline]
    pub fn get_local_at(&self, key: &LocalKey, now: Moment) -> Option<(Entry, Source)> {
        if let Some(local) = &self.local {
            if let Some(e) = local.get_at(key, now) {
                return Some((e, self.local_source));
            }
        }
        match &self.shared {
            None => None,
            Some(shared) => shared.get_fallback(key),
        }
    }

    /// A lookup in every layer.
    pub async fn get(&self, key: &CacheKey) -> Option<(Entry, Source)> {
        if let Some(hit) = self.get_local(key) {
            return Some(hit);
        }
        let shared = self.shared.as_ref()?;
        // Boxed: the backend's future is deep, and would make every caller's future deeper.
        let (entry, source) = shared.get(key).boxed().await?;
        if source == shared.source() {
            self.put_near(*key, &entry);
        }
        Some((entry, source))
    }

    fn put_near(&self, key: CacheKey, entry: &Entry) {
        if let (Some(near), Some(_)) = (&self.local, &self.shared) {
            near.put(key.local(), entry.clone());
        }
    }

    pub async fn put(&self, key: CacheKey, entry: Entry) {
        if let Some(local) = &self.local {
            local.put(key.local(), entry.clone());
        }
        if let Some(shared) = &self.shared {
            shared.put(key, &entry).await;
        }
    }

    /// Removes the entry from every layer: this process's in-process layers and the backend.
    pub async fn remove(&self, key: &CacheKey) {
        if let Some(local) = &self.local {
            local.remove(&key.local());
        }
        if let Some(shared) = &self.shared {
            shared.remove(key).await;
        }
    }

    /// Removes the entries of this identity's tokens: from the in-process layers (by their
    /// identity filters) and, with a shared backend, for the whole fleet (one record in its
    /// purge log, and a tombstone whose backend key `tombstone_text` makes from the backend's
    /// prefix; see `purges`). False when a shared backend could not be reached (the purge was
    /// then only local).
    pub async fn remove_identity(
        &self,
        identity: &str,
        tombstone_text: impl Fn(&str) -> String,
    ) -> bool {
        if let Some(local) = &self.local {
            local.remove_identity(identity);
        }
        match &self.shared {
            Some(shared) => {
                shared.remove_identity(identity);
                shared
                    .purge_identity(identity, &tombstone_text(shared.prefix()))
                    .await
            }
            None => true,
        }
    }

    /// With a shared backend: records a purge of the token of `key` for the fleet (after its
    /// entries were removed with [`Self::remove`]). False when the backend could not be reached.
    pub async fn record_token_purge(&self, key: &CacheKey) -> bool {
        match &self.shared {
            Some(shared) => shared.purge_token(key).await,
            None => true,
        }
    }

    /// With a shared backend: whether the token of `key`, or one of `identities`, was purged in
    /// the fleet after `entry` was fetched (its tombstones; `tombstone_text` makes an
    /// identity's tombstone key from the backend's prefix). True when the backend cannot tell.
    /// False without a shared backend (this process's purges act on its layers directly).
    pub async fn purged_since<'a>(
        &self,
        key: &CacheKey,
        identities: impl Iterator<Item = &'a str>,
        entry: &Entry,
        tombstone_text: impl Fn(&str, &str) -> String,
    ) -> bool {
        let Some(shared) = &self.shared else {
            return false;
        };
        let prefix = shared.prefix();
        let mut texts = vec![format!("{prefix}purged:t:{}", key.public_id())];
        texts.extend(identities.map(|i| tombstone_text(prefix, i)));
        shared
            .purged_since(&texts, shared::fetched_ms(entry))
            .await
            .unwrap_or(true)
    }

    /// Whether a shared backend is configured.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// The entry for `key` from the nearest layer that has it; otherwise fetches it once for
    /// every concurrent caller (see [`flight`]; with a shared backend, once for the fleet, see
    /// [`shared`]), stores it in every layer (unless its TTL is zero) and returns it. Each caller
    /// waits at most `wait`.
    pub async fn get_or_fetch<F>(
        self: Arc<Self>,
        key: CacheKey,
        wait: Duration,
        fetch: F,
    ) -> Result<(Entry, Source), Error>
    where
        F: FnOnce() -> BoxFuture<'static, Result<Fetched, Error>> + Send + 'static,
    {
        if let Some(hit) = self.get(&key).await {
            return Ok(hit);
        }
        if key.kind == Kind::Introspection {
            stats().misses.inc();
        }
        let store = self.clone();
        flight::join(&self.flights, key, wait, move || {
            store.fetch_and_store(key, wait, None, fetch).boxed()
        })
        .await
    }

    /// A background refresh of `key`, whose current answer expires at `expiring`: one fetch for
    /// every concurrent caller (and, with a shared backend, for the fleet: a value another
    /// process stored meanwhile is taken only if it outlives `expiring`), stored in every layer.
    pub async fn refresh<F>(
        self: Arc<Self>,
        key: CacheKey,
        wait: Duration,
        expiring: Moment,
        fetch: F,
    ) -> Result<(Entry, Source), Error>
    where
        F: FnOnce() -> BoxFuture<'static, Result<Fetched, Error>> + Send + 'static,
    {
        let store = self.clone();
        flight::join(&self.flights, key, wait, move || {
            store
                .fetch_and_store(key, wait, Some(expiring), fetch)
                .boxed()
        })
        .await
    }

    /// Whether a fetch of `key` is running in this process.
    pub fn is_fetching(&self, key: &CacheKey) -> bool {
        self.flights.contains(key)
    }

    /// The body of a flight: an answer at hand (outliving `expiring`, when given) or a fetch,
    /// stored in every layer.
    async fn fetch_and_store<F>(
        self: Arc<Self>,
        key: CacheKey,
        wait: Duration,
        expiring: Option<Moment>,
        fetch: F,
    ) -> Result<(Entry, Source), Error>
    where
        F: FnOnce() -> BoxFuture<'static, Result<Fetched, Error>>,
    {
        // A fetch that finished between our miss and our arrival in the flight table has stored
        // its answer (it stores before it leaves the table): use that.
        if let Some(hit) = self.get_local(&key) {
            if expiring.map_or(true, |e| hit.0.expires_at > e) {
                return Ok(hit);
            }
        }
        if let Some(shared) = &self.shared {
            let deadline = Instant::now() + wait;
            let (entry, source) = shared.fetch(key, deadline, expiring, fetch).await?;
            if entry.expires_at > Moment::now() {
                self.put_near(key, &entry);
            }
            return Ok((entry, source));
        }
        let fetched = fetch().await?;
        let cacheable = !fetched.ttl.is_zero();
        let entry = fetched.into_entry();
        if cacheable {
            if let Some(local) = &self.local {
                local.put(key.local(), entry.clone());
            }
        }
        Ok((entry, Source::Network))
    }

    /// For benchmarks: a bare GET of `key` from the shared backend with the store's own client.
    #[doc(hidden)]
    pub async fn backend_raw_get_len(&self, key: &CacheKey) -> Option<usize> {
        self.shared.as_ref()?.raw_get_len(key).await
    }

    pub fn describe(&self) -> serde_json::Value {
        let mut d = serde_json::json!({
            "backend": match self.config.backend {
                BackendConfig::Memory(_) => "memory",
                BackendConfig::Redis(_) => "redis",
                BackendConfig::Memcached(_) => "memcached",
            },
            "timeout_s": self.config.timeout.as_secs_f64(),
            "local_entries": self.local.as_ref().map_or(0, |l| l.entry_count()),
        });
        if let Some(shared) = &self.shared {
            d["near_cache"] = self.local.is_some().into();
            d["shared"] = shared.describe();
        }
        d
    }
}

/// Computes now what the cache's statics would compute on first use (see `process`).
pub fn warm_up() {
    keys::warm_up();
}
