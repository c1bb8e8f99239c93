//! tokenchecker: OAuth2 bearer-token checking for Globus resource servers.
//!
//! A [`Checker`] introspects tokens with Globus Auth, applies the expected scopes and audience,
//! learns the caller's identities and (through a dependent token and the Groups API) groups,
//! and caches what it learned in one process-wide cache. The C ABI in [`ffi`] exposes the same.
//!
//! # Layout
//!
//! One module per concern, with the dependencies running one way:
//! [`ffi`] → `checker` → `cache` / `introspection` / `auth_state` → [`model`], and everything may
//! use the leaves (`config`, `status`, `clock`, `json`, `log`, `stats`, `runtime`). `process`
//! holds what the whole process shares (runtime, current cache, stale area) and rebuilds it in
//! a forked child.
//!
//! - `config`: the configuration document, parsed and validated once.
//! - `introspection`: the HTTP client for Globus Auth and the Groups API.
//! - `auth_state`: the rules of a check and the result a caller gets.
//! - `cache`: the process-wide cache (in-memory, Redis, Memcached), sealing, fetch coalescing.
//! - `checker`: a checker, tying the above together; `stale`: answers served through an outage.
//! - [`model`]: the data every layer shares.
//!
//! Only what this page lists is the API. [`internals`] is what benchmarks, fuzz targets, the CLI
//! and the integration tests reach inside the crate; it is hidden and changes without notice.

mod auth_state;
mod cache;
mod checker;
mod clock;
mod config;
pub mod ffi;
mod introspection;
mod json;
mod log;
pub mod model;
mod policy;
mod process;
mod runtime;
mod stale;
mod stats;
mod status;

pub use auth_state::{AuthState, AuthorizeRequest, Groups};
pub use checker::{Authorization, Checker};
pub use config::Config;
pub use log::{set_rust_logger, tc_log_level as LogLevel, RustSink};
pub use model::{DependentToken, GroupList, Introspection, Source, TokenInfo};
pub use policy::Policy;
pub use status::{tc_status, Cause, Error, Status};

/// The C ABI's generation (see `tc_abi_version`); build.rs writes it into the header too.
pub const ABI_VERSION: u32 = 2;

/// The library's version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The library's counters and the current cache's description as one JSON document (what
/// `tc_stats` returns).
pub fn stats_json() -> String {
    let store = process::cache();
    let mut cache = store.describe();
    cache["in_flight"] = store.in_flight().into();
    stats::stats().to_json(cache)
}

/// The facts bindings share (what `tc_library_info` returns).
pub fn library_info() -> serde_json::Value {
    let statuses: serde_json::Map<String, serde_json::Value> = tc_status::all()
        .map(|(name, value)| (name.to_owned(), value.into()))
        .collect();
    serde_json::json!({
        "version": VERSION,
        "abi_version": ABI_VERSION,
        "statuses": statuses,
        "sources": Source::ALL.iter().map(|s| s.name()).collect::<Vec<_>>(),
        "config_keys": Config::keys(),
        "rule_keys": Config::rule_keys(),
        "log_levels": log::LEVELS
            .iter()
            .map(|&l| (l.name().to_owned(), (l as u32).into()))
            .collect::<serde_json::Map<String, serde_json::Value>>(),
    })
}

/// The library's counters in the Prometheus text exposition format (what `tc_metrics` returns).
pub fn metrics_text() -> String {
    let entries = process::cache().describe()["local_entries"]
        .as_u64()
        .unwrap_or(0);
    stats::stats().to_prometheus(entries)
}

/// What benchmarks, fuzz targets, the CLI and the integration tests use inside the crate.
///
/// Not part of the API: anything here may change in any release. Each module mirrors the
/// crate's module of the same name.
#[doc(hidden)]
pub mod internals {
    pub mod auth_state {
        pub use crate::auth_state::{validate, ALL_AUTHENTICATED_USERS, PUBLIC};
    }
    pub mod cache {
        pub use crate::cache::{CacheKey, CacheStore, Entry, KeyHasher, Kind, LocalKey, Value};
        pub mod memory {
            pub use crate::cache::memory::MemoryLayer;
        }
        pub mod sealing {
            pub use crate::cache::sealing::{open, seal, Rejected};
        }
    }
    pub mod clock {
        pub use crate::clock::{now_unix, Moment};
    }
    pub mod config {
        pub use crate::config::{BackendConfig, CacheConfig, RedisTopology};
    }
    pub mod introspection {
        pub use crate::introspection::{parse_dependent_tokens, parse_groups, parse_introspection};
    }
    pub mod process {
        pub use crate::process::{block_on, cache, generation, get, spawn};
    }
    pub mod stats {
        pub use crate::stats::stats;
    }
}
