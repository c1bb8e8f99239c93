//! Shared server state: tokens, clients, dependent tokens, faults, counters.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::faults::{Fault, Target};
use crate::model::TokenSpec;
use crate::{fixtures, Counters};

/// The three Globus endpoints the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Endpoint {
    Introspect,
    DependentToken,
    Groups,
}

impl Endpoint {
    pub const ALL: [Endpoint; 3] = [
        Endpoint::Introspect,
        Endpoint::DependentToken,
        Endpoint::Groups,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Introspect => "introspect",
            Endpoint::DependentToken => "dependent_token",
            Endpoint::Groups => "groups",
        }
    }

    pub fn parse(s: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.name() == s)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A dependent token handed out by a grant.
///
/// It lives independently of the token it came from: `snapshot` is the
/// original token's spec at grant time, used when the original is gone.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    /// The token it was derived from.
    pub original: String,
    pub resource_server: String,
    /// `None`: never expires (an `expires_in` too large to represent).
    pub expires_at: Option<Instant>,
    pub snapshot: Arc<TokenSpec>,
}

impl Grant {
    fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// A registered client.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    secret: String,
    /// Whether the client's scope depends on the Groups scope (so its
    /// dependent-token grants include a groups token).
    pub groups_dependency: bool,
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    in_flight: AtomicU64,
    max_concurrent: AtomicU64,
}

#[derive(Default)]
struct Tables {
    tokens: HashMap<String, Arc<TokenSpec>>,
    clients: HashMap<String, Client>,
    grants: HashMap<String, Grant>,
    /// Dependent-token grant requests per original token (since start / reset).
    grant_counts: HashMap<String, u64>,
    faults: HashMap<Target, Fault>,
}

/// Everything the handlers and the Rust API share.
pub(crate) struct AppState {
    tables: Mutex<Tables>,
    stats: [Stats; 3],
    grant_counter: AtomicU64,
    random: RandomState,
}

/// Marks one request in flight on an endpoint until dropped.
pub(crate) struct InFlight {
    state: Arc<AppState>,
    endpoint: Endpoint,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.stats[self.endpoint.index()]
            .in_flight
            .fetch_sub(1, Ordering::SeqCst);
    }
}

impl AppState {
    pub fn new(seed: bool) -> Arc<AppState> {
        let state = AppState {
            tables: Mutex::default(),
            stats: Default::default(),
            grant_counter: AtomicU64::new(0),
            random: RandomState::new(),
        };
        state.add_client(fixtures::CLIENT_ID, fixtures::CLIENT_SECRET, true);
        if seed {
            state
                .add_tokens(fixtures::tokens())
                .expect("fixtures are valid");
        }
        Arc::new(state)
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave the maps inconsistent.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds or replaces tokens (`{"<token>": <spec>, ...}`), all or nothing.
    pub fn add_tokens(&self, value: Value) -> Result<usize, String> {
        let specs = crate::model::parse_token_map(value)?;
        let n = specs.len();
        self.tables()
            .tokens
            .extend(specs.into_iter().map(|(t, s)| (t, Arc::new(s))));
        Ok(n)
    }

    /// Removes a token; dependent tokens already granted from it keep working.
    pub fn remove_token(&self, token: &str) -> bool {
        self.tables().tokens.remove(token).is_some()
    }

    pub fn token(&self, token: &str) -> Option<Arc<TokenSpec>> {
        self.tables().tokens.get(token).cloned()
    }

    /// Registers (or replaces) a client.
    pub fn add_client(&self, id: &str, secret: &str, groups_dependency: bool) {
        self.tables().clients.insert(
            id.into(),
            Client {
                secret: secret.into(),
                groups_dependency,
            },
        );
    }

    /// The client with these credentials, if they are right.
    pub fn client(&self, id: &str, secret: &str) -> Option<Client> {
        self.tables()
            .clients
            .get(id)
            .filter(|c| c.secret == secret)
            .cloned()
    }

    /// Counts one grant request for `original`.
    pub fn count_grant(&self, original: &str) {
        *self
            .tables()
            .grant_counts
            .entry(original.to_string())
            .or_default() += 1;
    }

    /// Grant requests for `original` since start / reset.
    pub fn grant_count(&self, original: &str) -> u64 {
        self.tables()
            .grant_counts
            .get(original)
            .copied()
            .unwrap_or(0)
    }

    pub fn grant_counts_json(&self) -> Value {
        let tables = self.tables();
        Value::Object(
            tables
                .grant_counts
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(*v)))
                .collect(),
        )
    }

    /// Mints a unique dependent access token derived from `original`, valid
    /// for `expires_in` seconds.
    pub fn mint_grant(
        &self,
        original: &str,
        snapshot: &Arc<TokenSpec>,
        resource_server: &str,
        expires_in: u64,
    ) -> String {
        let n = self.grant_counter.fetch_add(1, Ordering::SeqCst) + 1;
        let random = self.random.hash_one((n, original, resource_server));
        let token = format!("dep-{n}-{random:016x}");
        let expires_at = Instant::now().checked_add(Duration::from_secs(expires_in));
        self.tables().grants.insert(
            token.clone(),
            Grant {
                original: original.into(),
                resource_server: resource_server.into(),
                expires_at,
                snapshot: Arc::clone(snapshot),
            },
        );
        token
    }

    /// A dependent token that exists, was not revoked and has not expired.
    pub fn live_grant(&self, token: &str) -> Option<Grant> {
        let now = Instant::now();
        self.tables()
            .grants
            .get(token)
            .filter(|g| !g.expired(now))
            .cloned()
    }

    /// Revokes every dependent token derived from `original`, or all of them
    /// (`None`). Returns how many were revoked.
    pub fn revoke_grants(&self, original: Option<&str>) -> usize {
        let mut tables = self.tables();
        let before = tables.grants.len();
        match original {
            Some(o) => tables.grants.retain(|_, g| g.original != o),
            None => tables.grants.clear(),
        }
        before - tables.grants.len()
    }

    /// Revokes one dependent token.
    pub fn revoke_grant(&self, access_token: &str) -> bool {
        self.tables().grants.remove(access_token).is_some()
    }

    /// A random UUID-shaped id (for error documents).
    pub fn random_id(&self) -> String {
        let n = self.grant_counter.load(Ordering::SeqCst);
        let a = self.random.hash_one((n, "error-id-a", Instant::now()));
        let b = self.random.hash_one((n, "error-id-b", a));
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }

    /// Counts a request and marks it in flight.
    pub fn begin(self: &Arc<Self>, endpoint: Endpoint) -> InFlight {
        let stats = &self.stats[endpoint.index()];
        stats.requests.fetch_add(1, Ordering::SeqCst);
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_concurrent.fetch_max(now, Ordering::SeqCst);
        InFlight {
            state: Arc::clone(self),
            endpoint,
        }
    }

    pub fn set_fault(&self, fault: Fault) {
        self.tables().faults.insert(fault.target, fault);
    }

    pub fn clear_faults(&self) {
        self.tables().faults.clear();
    }

    /// Takes the fault for one request (the endpoint's own before `all`),
    /// consuming one unit of its `count`.
    pub fn take_fault(&self, endpoint: Endpoint) -> Option<Fault> {
        let mut tables = self.tables();
        let target = [Target::One(endpoint), Target::All]
            .into_iter()
            .find(|t| tables.faults.contains_key(t))?;
        let fault = tables.faults.get_mut(&target)?;
        match fault.count {
            Some(0) => {
                tables.faults.remove(&target);
                None
            }
            Some(n) => {
                fault.count = Some(n - 1);
                let taken = fault.clone();
                if n == 1 {
                    tables.faults.remove(&target);
                }
                Some(taken)
            }
            None => Some(fault.clone()),
        }
    }

    pub fn counters(&self) -> Counters {
        let req = |e: Endpoint| self.stats[e.index()].requests.load(Ordering::SeqCst);
        let max = |e: Endpoint| self.stats[e.index()].max_concurrent.load(Ordering::SeqCst);
        Counters {
            introspect: req(Endpoint::Introspect),
            dependent_token: req(Endpoint::DependentToken),
            groups: req(Endpoint::Groups),
            max_concurrent_introspect: max(Endpoint::Introspect),
            max_concurrent_dependent_token: max(Endpoint::DependentToken),
            max_concurrent_groups: max(Endpoint::Groups),
        }
    }

    pub fn counters_json(&self) -> Value {
        let c = self.counters();
        json!({
            "introspect": c.introspect,
            "dependent_token": c.dependent_token,
            "groups": c.groups,
            "max_concurrent": {
                "introspect": c.max_concurrent_introspect,
                "dependent_token": c.max_concurrent_dependent_token,
                "groups": c.max_concurrent_groups,
            },
        })
    }

    /// Zeroes counters (max_concurrent restarts from what is in flight now)
    /// and per-token grant counts, and clears faults. Tokens, clients and
    /// dependent tokens are kept.
    pub fn reset(&self) {
        self.tables().grant_counts.clear();
        for stats in &self.stats {
            stats.requests.store(0, Ordering::SeqCst);
            let in_flight = stats.in_flight.load(Ordering::SeqCst);
            stats.max_concurrent.store(in_flight, Ordering::SeqCst);
        }
        self.clear_faults();
    }
}
