//! The process-wide cache shared by every checker.
//!
//! One [`CacheStore`] is current at a time. A checker created with a `cache_config` builds a new
//! store and installs it (the last configuration wins, as in the original); a checker created
//! without one uses whatever is current. The current store is read through an `ArcSwap`, so the
//! hit path takes no lock. In-flight fetches are coalesced per key in [`flight`].

pub mod flight;
pub mod keys;
pub mod memory;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures::future::{BoxFuture, FutureExt};
use once_cell::sync::Lazy;

use crate::auth_state::TokenInfo;
use crate::config::{BackendConfig, CacheConfig};
use crate::introspection::DependentToken;
use crate::stats::stats;
use crate::status::Error;
pub use keys::{CacheKey, KeyHasher, Kind, TokenId};
use memory::MemoryLayer;

/// What a cache entry holds.
#[derive(Debug, Clone)]
pub enum Value {
    Introspection(Arc<TokenInfo>),
    Groups(Arc<Vec<String>>),
    DependentTokens(Arc<Vec<DependentToken>>),
}

/// One cached answer and when it was fetched.
#[derive(Debug)]
pub struct Entry {
    pub value: Value,
    /// When the answer was fetched from the authorization server (for the result's `age`).
    pub fetched_at: Instant,
    pub expires_at: Instant,
    /// The identities of the token the entry belongs to, for purging by identity.
    pub identities: Arc<[String]>,
}

impl Entry {
    pub fn new(value: Value, ttl: Duration, identities: Arc<[String]>) -> Self {
        let now = Instant::now();
        Entry {
            value,
            fetched_at: now,
            expires_at: now + ttl,
            identities,
        }
    }

    fn with_expiry(&self, expires_at: Instant) -> Entry {
        Entry {
            value: self.value.clone(),
            fetched_at: self.fetched_at,
            expires_at,
            identities: self.identities.clone(),
        }
    }

    /// An inactive token's entry.
    pub fn is_negative(&self) -> bool {
        matches!(&self.value, Value::Introspection(info) if !info.intro.active)
    }
}

/// A freshly fetched answer and how long it may be cached (zero: not at all).
pub struct Fetched {
    pub value: Value,
    pub ttl: Duration,
    pub identities: Arc<[String]>,
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Fetched by this call.
    Network,
    /// Fetched by a concurrent call this one waited for.
    Coalesced,
    /// The embedded in-memory cache.
    Memory,
    /// The near cache in front of a shared backend.
    Near,
    Redis,
    Memcached,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Network => "network",
            Source::Coalesced => "coalesced",
            Source::Memory => "memory",
            Source::Near => "near",
            Source::Redis => "redis",
            Source::Memcached => "memcached",
        }
    }
}

/// One cache configuration, live.
pub struct CacheStore {
    pub config: CacheConfig,
    local: MemoryLayer,
    local_source: Source,
}

impl CacheStore {
    pub fn new(config: &CacheConfig) -> Result<CacheStore, Error> {
        match &config.backend {
            BackendConfig::Memory(m) => Ok(CacheStore {
                config: config.clone(),
                local: MemoryLayer::new(m.max_entries, config.timeout),
                local_source: Source::Memory,
            }),
            BackendConfig::Redis(_) | BackendConfig::Memcached(_) => Err(Error::invalid_config(
                "cache_config.backend: the Redis and Memcached backends are not built yet",
            )),
        }
    }

    /// Upper bound of every entry's lifetime.
    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// A lookup in the in-process layer only (never blocks, never touches the network).
    #[inline]
    pub fn get_local(&self, key: &CacheKey) -> Option<(Arc<Entry>, Source)> {
        self.local.get(key).map(|e| (e, self.local_source))
    }

    /// A lookup in every layer.
    pub async fn get(&self, key: &CacheKey) -> Option<(Arc<Entry>, Source)> {
        self.get_local(key)
    }

    pub async fn put(&self, key: CacheKey, entry: Arc<Entry>) {
        self.local.put(key, entry);
    }

    pub async fn remove(&self, key: &CacheKey) {
        self.local.remove(key);
    }

    pub async fn remove_identity(&self, identity: &str) {
        self.local.remove_identity(identity);
    }

    /// The entry for `key` from the nearest layer that has it; otherwise fetches it once for
    /// every concurrent caller (see [`flight`]), stores it in every layer (unless its TTL is
    /// zero) and returns it. Each caller waits at most `wait`.
    pub async fn get_or_fetch<F>(
        self: Arc<Self>,
        key: CacheKey,
        wait: Duration,
        fetch: F,
    ) -> Result<(Arc<Entry>, Source), Error>
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
        let (entry, leader) = flight::join(key, wait, move || {
            async move {
                let fetched = fetch().await?;
                let entry = Arc::new(Entry::new(fetched.value, fetched.ttl, fetched.identities));
                if !fetched.ttl.is_zero() {
                    store.put(key, entry.clone()).await;
                }
                Ok(entry)
            }
            .boxed()
        })
        .await?;
        Ok((
            entry,
            if leader {
                Source::Network
            } else {
                Source::Coalesced
            },
        ))
    }

    pub fn describe(&self) -> serde_json::Value {
        self.local.run_pending_tasks();
        serde_json::json!({
            "backend": match self.config.backend {
                BackendConfig::Memory(_) => "memory",
                BackendConfig::Redis(_) => "redis",
                BackendConfig::Memcached(_) => "memcached",
            },
            "timeout_s": self.config.timeout.as_secs_f64(),
            "local_entries": self.local.entry_count(),
        })
    }
}

static CURRENT: Lazy<ArcSwap<CacheStore>> = Lazy::new(|| {
    ArcSwap::from_pointee(
        CacheStore::new(&CacheConfig::default_memory()).expect("the default cache builds"),
    )
});

/// The cache every checker uses now.
#[inline]
pub fn current() -> arc_swap::Guard<Arc<CacheStore>> {
    CURRENT.load()
}

/// The cache every checker uses now, as an owned handle (for work that outlives a call).
pub fn current_arc() -> Arc<CacheStore> {
    CURRENT.load_full()
}

/// Drops the current cache and makes `store` the one every checker uses.
pub fn install(store: CacheStore) {
    CURRENT.store(Arc::new(store));
    stats().cache_resets.inc();
}
