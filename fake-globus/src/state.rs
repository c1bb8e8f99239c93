//! Shared server state: tokens, clients, dependent tokens, faults, counters.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

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
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    /// The token it was derived from.
    pub original: String,
    pub resource_server: String,
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    in_flight: AtomicU64,
    max_concurrent: AtomicU64,
}

#[derive(Default)]
struct Tables {
    tokens: HashMap<String, TokenSpec>,
    clients: HashMap<String, String>,
    grants: HashMap<String, Grant>,
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
        state.add_client(fixtures::CLIENT_ID, fixtures::CLIENT_SECRET);
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
        self.tables().tokens.extend(specs);
        Ok(n)
    }

    pub fn remove_token(&self, token: &str) -> bool {
        self.tables().tokens.remove(token).is_some()
    }

    pub fn token(&self, token: &str) -> Option<TokenSpec> {
        self.tables().tokens.get(token).cloned()
    }

    pub fn add_client(&self, id: &str, secret: &str) {
        self.tables().clients.insert(id.into(), secret.into());
    }

    pub fn client_ok(&self, id: &str, secret: &str) -> bool {
        self.tables().clients.get(id).is_some_and(|s| s == secret)
    }

    /// Mints a unique dependent access token derived from `original`.
    pub fn mint_grant(&self, original: &str, resource_server: &str) -> String {
        let n = self.grant_counter.fetch_add(1, Ordering::SeqCst) + 1;
        let random = self.random.hash_one((n, original, resource_server));
        let token = format!("dep-{n}-{random:016x}");
        self.tables().grants.insert(
            token.clone(),
            Grant {
                original: original.into(),
                resource_server: resource_server.into(),
            },
        );
        token
    }

    pub fn grant(&self, token: &str) -> Option<Grant> {
        self.tables().grants.get(token).cloned()
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
    /// and clears faults. Tokens, clients and grants are kept.
    pub fn reset(&self) {
        for stats in &self.stats {
            stats.requests.store(0, Ordering::SeqCst);
            let in_flight = stats.in_flight.load(Ordering::SeqCst);
            stats.max_concurrent.store(in_flight, Ordering::SeqCst);
        }
        self.clear_faults();
    }
}
