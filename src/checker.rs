//! The checker: checks tokens, authorizes callers, hands out dependent tokens, purges.
//!
//! Every operation is an async function run on the shared runtime; the blocking entry points
//! first try the in-process cache without touching the runtime at all (the hot path), then fall
//! back to `runtime::block_on`.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use crate::auth_state::{validate, AuthState, AuthorizeRequest, GroupList, Groups, TokenInfo};
use crate::cache::{
    self, CacheKey, CacheStore, Entry, Fetched, IdentityFilter, KeyHasher, Kind, Moment, Source,
    TokenId,
};
use crate::config::{Config, FetchGroups};
use crate::introspection::{
    now_unix, AuthClient, DependentToken, GROUPS_RESOURCE_SERVER, GROUPS_SCOPE,
};
use crate::log::{log_error, log_info, log_warn};
use crate::runtime;
use crate::stale;
use crate::stats::stats;
use crate::status::{tc_status, Error};

/// Dependent tokens are dropped from the cache this long before they expire.
const DEPENDENT_TOKEN_MARGIN_S: i64 = 60;
/// What creation introspects to learn whether the client credentials are accepted.
const CREDENTIAL_PROBE_TOKEN: &str = "tokenchecker-credential-probe";

/// A configured token checker. Cheap to share: wrap it in an `Arc` and use it from any thread.
pub struct Checker {
    config: Config,
    client: Arc<AuthClient>,
    hasher: KeyHasher,
    /// How long one caller waits for one request's answer (its retries included).
    wait: Duration,
}

/// The outcome of a successful authorization.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub state: AuthState,
    /// The allowed principal that matched.
    pub matched: String,
}

impl Checker {
    /// Builds a checker from a JSON configuration (blocking: it may probe the credentials).
    pub fn from_json(config_json: &str) -> Result<Checker, Error> {
        Checker::new(Config::from_json(config_json)?)
    }

    /// Builds a checker. With `config.cache` set, the process-wide cache is replaced, but only
    /// once everything else succeeded: a failed creation leaves the current cache as it was.
    pub fn new(config: Config) -> Result<Checker, Error> {
        let client = Arc::new(AuthClient::new(&config)?);
        let hasher = KeyHasher::new(&config.client_id, &config.client_secret, &config.auth_url);
        let per_try = config.connect_timeout + config.request_timeout;
        let wait = per_try * (config.max_retries + 1) + Duration::from_secs(2) * config.max_retries;
        let store = config.cache.as_ref().map(CacheStore::new).transpose()?;
        let checker = Checker {
            config,
            client,
            hasher,
            wait,
        };
        if checker.config.verify_credentials {
            let client = checker.client.clone();
            let probe =
                runtime::block_on(async move { client.introspect(CREDENTIAL_PROBE_TOKEN).await })?;
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
            cache::install(store);
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

    fn token_id(&self, token: &str) -> Result<TokenId, Error> {
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
        Ok(self.hasher.token_id(token))
    }

    // ---- checking -------------------------------------------------------------------------

    /// Checks a token; blocks the calling thread until it knows (never from a runtime thread).
    pub fn check(&self, token: &str) -> Result<AuthState, Error> {
        stats().checks.inc();
        if let Some(result) = self.lookup_local(token)? {
            return result;
        }
        runtime::block_on(self.check_inner(token))?
    }

    /// Answers from the in-process cache only: `Ok(None)` when the answer needs the network.
    pub fn try_check(&self, token: &str) -> Result<Option<Result<AuthState, Error>>, Error> {
        stats().checks.inc();
        self.lookup_local(token)
    }

    /// The hot path: the whole check from the in-process layer, without touching the runtime.
    fn lookup_local(&self, token: &str) -> Result<Option<Result<AuthState, Error>>, Error> {
        let id = self.token_id(token)?;
        let store = cache::current();
        // One clock read serves the entry's expiry and the answer's age.
        let now = Moment::now();
        let Some((entry, source)) =
            store.get_local_at(&CacheKey::new(Kind::Introspection, id), now)
        else {
            return Ok(None);
        };
        let groups = match self.config.fetch_groups {
            FetchGroups::Eager => match local_groups(&store, id, now) {
                Some(g) => Groups::Available(g),
                None => return Ok(None),
            },
            _ => Groups::NotFetched,
        };
        Ok(Some(self.state_from(&entry, source, groups, now)))
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
        validate(&self.config, info, now_unix())?;
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
        self.check_inner(token).await
    }

    async fn check_inner(&self, token: &str) -> Result<AuthState, Error> {
        let id = self.token_id(token)?;
        let (entry, source) = self.introspection(token, id).await?;
        let mut state = self.state_from(&entry, source, Groups::NotFetched, Moment::now())?;
        if self.config.fetch_groups == FetchGroups::Eager {
            state.groups = self.groups(token, id, &state.info).await;
        }
        Ok(state)
    }

    async fn introspection(&self, token: &str, id: TokenId) -> Result<(Entry, Source), Error> {
        let client = self.client.clone();
        let token = token.to_owned();
        let store = cache::current_arc();
        let timeout = store.timeout();
        let key = CacheKey::new(Kind::Introspection, id);
        let result = store
            .get_or_fetch(key, self.wait, move || {
                async move {
                    let info = TokenInfo::new(client.introspect(&token).await?);
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
                    })
                }
                .boxed()
            })
            .await;
        let stale_for = self.config.stale_if_error;
        if stale_for.is_zero() {
            return result;
        }
        match result {
            Ok((entry, source @ (Source::Network | Source::Coalesced))) => {
                stale::remember(key, &entry, timeout, stale_for);
                Ok((entry, source))
            }
            Err(e) if e.status == tc_status::TC_AUTH_UNAVAILABLE => match stale::recall(&key) {
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

    // ---- groups and dependent tokens ------------------------------------------------------

    async fn dependent_tokens(
        &self,
        token: &str,
        id: TokenId,
        identities: IdentityFilter,
    ) -> Result<Arc<Vec<DependentToken>>, Error> {
        let client = self.client.clone();
        let token = token.to_owned();
        let key = CacheKey::new(Kind::DependentTokens, id);
        let (entry, _) = cache::current_arc()
            .get_or_fetch(key, self.wait, move || {
                async move {
                    let tokens = client.dependent_tokens(&token).await?;
                    // Their own lifetime, less a margin so a caller never gets one about to expire.
                    let soonest = tokens.iter().map(|t| t.expires_at).min().unwrap_or(0);
                    Ok(Fetched {
                        value: cache::Value::DependentTokens(Arc::new(tokens)),
                        ttl: secs_until(soonest - DEPENDENT_TOKEN_MARGIN_S),
                        identities,
                    })
                }
                .boxed()
            })
            .await?;
        match &entry.value {
            cache::Value::DependentTokens(t) => Ok(t.clone()),
            _ => Err(wrong_kind()),
        }
    }

    /// The caller's groups; a failure is reported as unavailable, and not cached.
    async fn groups(&self, token: &str, id: TokenId, info: &TokenInfo) -> Groups {
        match self.fetch_groups(token, id, info).await {
            Ok(g) => Groups::Available(g),
            Err(e) => Groups::Unavailable(e.message),
        }
    }

    async fn fetch_groups(
        &self,
        token: &str,
        id: TokenId,
        info: &TokenInfo,
    ) -> Result<Arc<GroupList>, Error> {
        let store = cache::current_arc();
        let key = CacheKey::new(Kind::Groups, id);
        if let Some((entry, _)) = store.get(&key).await {
            if let cache::Value::Groups(g) = &entry.value {
                return Ok(g.clone());
            }
        }
        let identities = info.identity_filter();
        let dependent = self.dependent_tokens(token, id, identities).await?;
        let groups_token = dependent
            .iter()
            .find(|t| {
                t.resource_server == GROUPS_RESOURCE_SERVER
                    || t.scope.split_whitespace().any(|s| s == GROUPS_SCOPE)
            })
            .map(|t| t.access_token.clone())
            .ok_or_else(|| {
                Error::unavailable(
                    "the dependent-token grant gave no Groups API token; add the groups scope \
                     (view_my_groups_and_memberships) to this client's scope dependencies",
                )
            })?;
        let client = self.client.clone();
        let ttl = store.timeout().min(secs_until(info.exp().unwrap_or(0)));
        let (entry, _) = store
            .get_or_fetch(key, self.wait, move || {
                async move {
                    let groups = client.my_groups(&groups_token).await?;
                    Ok(Fetched {
                        value: cache::Value::Groups(Arc::new(GroupList::new(groups))),
                        ttl,
                        identities,
                    })
                }
                .boxed()
            })
            .await?;
        match &entry.value {
            cache::Value::Groups(g) => Ok(g.clone()),
            _ => Err(wrong_kind()),
        }
    }

    // ---- authorization --------------------------------------------------------------------

    /// Checks the token, then whether the caller is one of the allowed principals. Answers from
    /// the in-process cache without touching the runtime when it can.
    pub fn authorize(
        &self,
        token: &str,
        request: &AuthorizeRequest,
    ) -> Result<Authorization, Error> {
        if let Some(result) = self.try_authorize(token, request)? {
            return result;
        }
        runtime::block_on(self.authorize_inner(token, request))?
    }

    /// `authorize` from the in-process cache only: `Ok(None)` when it needs the network.
    pub fn try_authorize(
        &self,
        token: &str,
        request: &AuthorizeRequest,
    ) -> Result<Option<Result<Authorization, Error>>, Error> {
        stats().checks.inc();
        let state = match self.lookup_local(token)? {
            None => return Ok(None),
            Some(Err(e)) => return Ok(Some(Err(e))),
            Some(Ok(state)) => state,
        };
        match self.authorization_step(request, state) {
            Step::Done(result) => Ok(Some(result)),
            Step::NeedGroups(mut state) => {
                let id = self.token_id(token)?;
                let Some(groups) = local_groups(&cache::current(), id, Moment::now()) else {
                    return Ok(None);
                };
                state.groups = Groups::Available(groups);
                match self.authorization_step(request, state) {
                    Step::Done(result) => Ok(Some(result)),
                    Step::NeedGroups(_) => Ok(None),
                }
            }
        }
    }

    pub async fn authorize_async(
        &self,
        token: &str,
        request: &AuthorizeRequest,
    ) -> Result<Authorization, Error> {
        stats().checks.inc();
        self.authorize_inner(token, request).await
    }

    async fn authorize_inner(
        &self,
        token: &str,
        request: &AuthorizeRequest,
    ) -> Result<Authorization, Error> {
        let state = self.check_inner(token).await?;
        match self.authorization_step(request, state) {
            Step::Done(result) => result,
            Step::NeedGroups(mut state) => {
                let id = self.token_id(token)?;
                state.groups = self.groups(token, id, &state.info).await;
                match self.authorization_step(request, state) {
                    Step::Done(result) => result,
                    Step::NeedGroups(_) => Err(wrong_kind()),
                }
            }
        }
    }

    /// The original `check_authorization`, once the token passed: public, then all
    /// authenticated users, then identities, and groups only when nothing cheaper matched.
    fn authorization_step(&self, request: &AuthorizeRequest, state: AuthState) -> Step {
        if let Some(matched) = request.match_without_groups(&state.info) {
            return Step::Done(Ok(Authorization { state, matched }));
        }
        if request.names_groups() && self.config.fetch_groups != FetchGroups::Never {
            match &state.groups {
                Groups::NotFetched => return Step::NeedGroups(state),
                Groups::Available(groups) => {
                    if let Some(matched) = request.match_groups(groups) {
                        return Step::Done(Ok(Authorization { state, matched }));
                    }
                }
                Groups::Unavailable(why) => {
                    return Step::Done(Err(Error::unavailable(format!(
                        "cannot authorize by group: group memberships are unavailable ({why})"
                    ))))
                }
            }
        }
        Step::Done(Err(Error::new(
            tc_status::TC_NOT_AUTHORIZED,
            "the caller is none of the allowed principals",
        )))
    }

    // ---- dependent tokens -----------------------------------------------------------------

    /// A dependent token for `scope` (or for a resource server named `scope`), after the
    /// caller's token passed every check.
    pub fn dependent_token(&self, token: &str, scope: &str) -> Result<DependentToken, Error> {
        runtime::block_on(self.dependent_token_async(token, scope))?
    }

    pub async fn dependent_token_async(
        &self,
        token: &str,
        scope: &str,
    ) -> Result<DependentToken, Error> {
        if scope.trim().is_empty() {
            return Err(Error::invalid_argument("the requested scope is empty"));
        }
        stats().checks.inc();
        let id = self.token_id(token)?;
        let state = self.check_inner(token).await?;
        let identities = state.info.identity_filter();
        let tokens = self.dependent_tokens(token, id, identities).await?;
        tokens
            .iter()
            .find(|t| t.scope.split_whitespace().any(|s| s == scope) || t.resource_server == scope)
            .cloned()
            .ok_or_else(|| {
                let have: Vec<&str> = tokens.iter().map(|t| t.scope.as_str()).collect();
                Error::new(
                    tc_status::TC_NOT_AUTHORIZED,
                    format!(
                        "no dependent token for scope {scope:?}; the grant gave tokens for {have:?}"
                    ),
                )
            })
    }

    // ---- revocation -----------------------------------------------------------------------

    /// Removes everything cached for one token, from every layer.
    pub fn purge(&self, token: &str) -> Result<(), Error> {
        runtime::block_on(self.purge_async(token))?
    }

    pub async fn purge_async(&self, token: &str) -> Result<(), Error> {
        let id = self.token_id(token)?;
        let store = cache::current_arc();
        for kind in Kind::ALL {
            store.remove(&CacheKey::new(kind, id)).await;
        }
        stale::forget(&CacheKey::new(Kind::Introspection, id));
        stats().purges.inc();
        Ok(())
    }

    /// Removes everything cached for tokens of one identity (from the in-process layer).
    pub fn purge_identity(&self, identity_id: &str) -> Result<(), Error> {
        if identity_id.is_empty() {
            return Err(Error::invalid_argument("the identity id is empty"));
        }
        let id = identity_id
            .strip_prefix(crate::auth_state::IDENTITY_PREFIX)
            .unwrap_or(identity_id)
            .to_string();
        stale::forget_identity(&id);
        runtime::block_on(async move { cache::current_arc().remove_identity(&id).await })?;
        stats().purges.inc();
        Ok(())
    }
}

/// Where an authorization stands.
enum Step {
    Done(Result<Authorization, Error>),
    /// Only the caller's groups can decide.
    NeedGroups(AuthState),
}

/// The caller's groups from the in-process layer.
fn local_groups(store: &CacheStore, id: TokenId, now: Moment) -> Option<Arc<GroupList>> {
    match store.get_local_at(&CacheKey::new(Kind::Groups, id), now) {
        Some((entry, _)) => match &entry.value {
            cache::Value::Groups(g) => Some(g.clone()),
            _ => None,
        },
        None => None,
    }
}

/// The time from now until the unix instant `t` (zero when it has passed).
fn secs_until(t: i64) -> Duration {
    Duration::from_secs(t.saturating_sub(now_unix()).max(0) as u64)
}

fn wrong_kind() -> Error {
    Error::new(tc_status::TC_PANIC, "a cache entry of the wrong kind")
}
