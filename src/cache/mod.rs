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
pub(crate) mod redis;
pub(crate) mod sealing;
pub(crate) mod shared;

use std::sync::Arc;
use std::time::Duration;

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
    /// identity filters) and, with a shared backend, through the identity's index there, from
    /// the backend, for the whole fleet. `index_text` makes the index's backend key from the
    /// backend's prefix. False when a shared backend could not be reached (the purge was then
    /// only local).
    pub async fn remove_identity(
        &self,
        identity: &str,
        index_text: impl Fn(&str) -> String,
    ) -> bool {
        if let Some(local) = &self.local {
            local.remove_identity(identity);
        }
        match &self.shared {
            Some(shared) => {
                shared.remove_identity(identity);
                shared.purge_index(&index_text(shared.prefix())).await
            }
            None => true,
        }
    }

    /// With a shared backend: records the token's identities in their indexes there (see
    /// [`Self::remove_identity`]); `index_text` as there. Nothing to do otherwise.
    pub async fn index_identities<'a>(
        &self,
        key: &CacheKey,
        identities: impl Iterator<Item = &'a str>,
        index_text: impl Fn(&str, &str) -> String,
    ) {
        if let Some(shared) = &self.shared {
            let texts: Vec<String> = identities.map(|i| index_text(shared.prefix(), i)).collect();
            shared.index_identities(key, &texts).await;
        }
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
            async move {
                // A fetch that finished between our miss and our arrival in the flight table
                // has stored its answer (it stores before it leaves the table): use that.
                if let Some(hit) = store.get_local(&key) {
                    return Ok(hit);
                }
                if let Some(shared) = &store.shared {
                    let (entry, source) = shared.fetch(key, fetch).await?;
                    if entry.expires_at > Moment::now() {
                        store.put_near(key, &entry);
                    }
                    return Ok((entry, source));
                }
                let fetched = fetch().await?;
                let entry = Entry::new(fetched.value, fetched.ttl, fetched.identities);
                if !fetched.ttl.is_zero() {
                    if let Some(local) = &store.local {
                        local.put(key.local(), entry.clone());
                    }
                }
                Ok((entry, Source::Network))
            }
            .boxed()
        })
        .await
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
