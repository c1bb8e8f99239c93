//! The checker: checks tokens, authorizes callers, hands out dependent tokens, purges.
//!
//! Every operation is an async function run on the shared runtime; the blocking entry points
//! first try the in-process cache without touching the runtime at all (the hot path), then fall
//! back to `runtime::block_on`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;

use crate::auth_state::{validate, AuthState, AuthorizeRequest, Groups};
use crate::cache::{
    self, CacheKey, CacheStore, Entry, Fetched, KeyHasher, Kind, LocalId, LocalKey, TokenIds,
};
use crate::clock::{now_unix, Moment};
use crate::config::{Config, FetchGroups};
use crate::introspection::{AuthClient, GROUPS_RESOURCE_SERVER, GROUPS_SCOPE};
use crate::log::{log_error, log_info, log_warn};
use crate::model::{DependentToken, GroupList, IdentityFilter, Source, TokenInfo};
use crate::runtime;
use crate::stale;
use crate::stats::stats;
use crate::status::{tc_status, Cause, Error};

/// Dependent tokens are dropped from the cache this long before they expire.
const DEPENDENT_TOKEN_MARGIN_S: i64 = 60;
/// What creation introspects to learn whether the client credentials are accepted.
const CREDENTIAL_PROBE_TOKEN: &str = "tokenchecker-credential-probe";
/// How many tokens' "the grant was asked again" marks a checker keeps (see
/// [`Checker::dependent_token_async`]).
const REGRANT_MARKS: usize = 10_000;

/// A configured token checker. Cheap to share: wrap it in an `Arc` and use it from any thread.
pub struct Checker {
    config: Config,
    client: Arc<AuthClient>,
    hasher: KeyHasher,
    /// How long one caller waits for one request's answer (its retries included).
    wait: Duration,
    /// When (a [`Moment`]'s nanoseconds; 0: never) a grant last came without a Groups token:
    /// this client's scope lacks the Groups dependency. Until a cache lifetime has passed,
    /// group rules answer "not granted" without asking for a grant again.
    groups_not_granted_at: AtomicU64,
    /// The "no Groups dependency" warning was logged (once per checker).
    groups_warned: AtomicBool,
    /// Tokens whose dependent-token grant was asked again because it lacked a requested scope
    /// (at most once per token per cache lifetime), and when.
    regranted: quick_cache::sync::Cache<LocalId, Moment>,
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
    pub fn new(mut config: Config) -> Result<Checker, Error> {
        static NEXT_RULES_ID: AtomicU64 = AtomicU64::new(1);
        // This checker's rules, fixed from now on: its own id (see `Config::rules_id`).
        config.rules_id = NEXT_RULES_ID.fetch_add(1, Ordering::Relaxed);
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
            groups_not_granted_at: AtomicU64::new(0),
            groups_warned: AtomicBool::new(false),
            regranted: quick_cache::sync::Cache::new(REGRANT_MARKS),
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
            let client = checker.client.clone();
            let deadline = Instant::now() + wait;
            let probe = runtime::block_on(async move {
                client.introspect(CREDENTIAL_PROBE_TOKEN, deadline).await
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
        runtime::block_on(self.check_inner(token))?
    }

    /// The rest of [`Self::check`] after [`Self::try_check`] missed (counted there): blocks.
    pub fn check_uncached(&self, token: &str) -> Result<AuthState, Error> {
        runtime::block_on(self.check_inner(token))?
    }

    /// Answers from the in-process cache only: `Ok(None)` when the answer needs the network.
    pub fn try_check(&self, token: &str) -> Result<Option<Result<AuthState, Error>>, Error> {
        stats().checks.inc();
        self.lookup_local(token)
    }

    /// The hot path: the whole check from the in-process layer, without touching the runtime.
    fn lookup_local(&self, token: &str) -> Result<Option<Result<AuthState, Error>>, Error> {
        let id = self.local_id(token)?;
        let store = cache::current();
        // One clock read serves the entry's expiry and the answer's age: the coarse clock (an
        // entry may be served a few milliseconds past its expiry; its token's `exp` is still
        // checked in whole seconds).
        let now = Moment::now_coarse();
        let Some((entry, source)) =
            store.get_local_at(&LocalKey::new(Kind::Introspection, id), now)
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
        self.check_inner(token).await
    }

    async fn check_inner(&self, token: &str) -> Result<AuthState, Error> {
        let id = self.token_id(token)?;
        let (entry, source) = self.introspection(token, id).await?;
        let mut state = self.state_from(&entry, source, Groups::NotFetched, Moment::now())?;
        if self.config.fetch_groups == FetchGroups::Eager {
            state.groups = self.groups(token, id, &state.info).await?;
        }
        Ok(state)
    }

    async fn introspection(&self, token: &str, id: TokenIds) -> Result<(Entry, Source), Error> {
        let client = self.client.clone();
        let token = token.to_owned();
        let store = cache::current_arc();
        let timeout = store.timeout();
        let key = CacheKey::new(Kind::Introspection, id);
        let wait = self.wait;
        let result = store
            .clone()
            .get_or_fetch(key, self.wait, move || {
                async move {
                    let deadline = Instant::now() + wait;
                    let info = TokenInfo::new(client.introspect(&token, deadline).await?);
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
        if let Ok((entry, Source::Network)) = &result {
            // The fetch of this call: with a shared backend, let the fleet find the token by
            // its identities (for `purge_identity`).
            if let (true, cache::Value::Introspection(info)) = (store.is_shared(), &entry.value) {
                let ids = info.identities();
                store
                    .index_identities(&key, ids.iter().map(String::as_str), |prefix, i| {
                        self.hasher.identity_index_text(prefix, i)
                    })
                    .await;
            }
        }
        let stale_for = self.config.stale_if_error;
        if stale_for.is_zero() {
            return result;
        }
        match result {
            Ok((entry, source @ (Source::Network | Source::Coalesced))) => {
                stale::remember(key, &entry, timeout, stale_for);
                Ok((entry, source))
            }
            // Only when the server itself failed: never for load shedding here, a caller's own
            // deadline, a malformed answer or a 4xx (a flood of new tokens must not be able to
            // make a revoked one pass).
            Err(e) if e.cause == Cause::Upstream => match stale::recall(&key) {
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
        id: TokenIds,
        identities: IdentityFilter,
    ) -> Result<(Arc<Vec<DependentToken>>, bool), Error> {
        let client = self.client.clone();
        let token_copy = token.to_owned();
        let key = CacheKey::new(Kind::DependentTokens, id);
        let store = cache::current_arc();
        let timeout = store.timeout();
        let wait = self.wait;
        let fetched = store
            .get_or_fetch(key, self.wait, move || {
                async move {
                    let deadline = Instant::now() + wait;
                    let tokens = client.dependent_tokens(&token_copy, deadline).await?;
                    // Their own lifetime, less a margin so a caller never gets one about to
                    // expire; a grant with no token at all is kept for the cache lifetime (so it
                    // is not asked again on every request).
                    let ttl = match tokens.iter().map(|t| t.expires_at).min() {
                        Some(soonest) => secs_until(soonest - DEPENDENT_TOKEN_MARGIN_S),
                        None => timeout,
                    };
                    Ok(Fetched {
                        value: cache::Value::DependentTokens(Arc::new(tokens)),
                        ttl,
                        identities,
                    })
                }
                .boxed()
            })
            .await;
        let (entry, source) = match fetched {
            Ok(found) => found,
            Err(e) if e.cause == Cause::TokenRejected => {
                // invalid_grant: the token was revoked (or expired) after its introspection was
                // cached. It is no longer valid anywhere: forget everything about it.
                log_info!(
                    "the dependent-token grant says a cached token is no longer valid; purging it"
                );
                self.purge_id(id).await;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        match &entry.value {
            cache::Value::DependentTokens(t) => Ok((t.clone(), fresh(source))),
            _ => Err(wrong_kind()),
        }
    }

    /// The caller's groups. A failure of the Groups API or the grant is reported as
    /// unavailable and not cached; a grant without a Groups token (this service's scope lacks
    /// the dependency) as not granted. An error only when the token itself turned out to be no
    /// longer valid (the grant said `invalid_grant`).
    async fn groups(&self, token: &str, id: TokenIds, info: &TokenInfo) -> Result<Groups, Error> {
        // Boxed: the grant and the Groups call make a deep future, and every caller's with it.
        match Box::pin(self.fetch_groups(token, id, info)).await {
            Ok(g) => Ok(Groups::Available(g)),
            Err(e)
                if e.cause == Cause::TokenRejected && e.status == tc_status::TC_INACTIVE_TOKEN =>
            {
                Err(e)
            }
            Err(e) if e.status == tc_status::TC_NOT_AUTHORIZED => Ok(Groups::NotGranted(e.message)),
            Err(e) => Ok(Groups::Unavailable(e.message)),
        }
    }

    /// The "no Groups dependency" outcome (`TC_NOT_AUTHORIZED`, naming the scope to add).
    fn groups_not_granted() -> Error {
        Error::new(
            tc_status::TC_NOT_AUTHORIZED,
            format!(
                "this service may not read group memberships: the dependent-token grant gave no \
                 Groups API token; add {GROUPS_SCOPE} to the scope dependencies of this \
                 service's scope"
            ),
        )
    }

    /// Whether a grant without a Groups token was seen within the last cache lifetime.
    fn groups_recently_not_granted(&self, now: Moment) -> bool {
        let at = self.groups_not_granted_at.load(Ordering::Relaxed);
        at != 0
            && now.saturating_duration_since(Moment::from_nanos(at)) < cache::current().timeout()
    }

    async fn fetch_groups(
        &self,
        token: &str,
        id: TokenIds,
        info: &TokenInfo,
    ) -> Result<Arc<GroupList>, Error> {
        let store = cache::current_arc();
        let key = CacheKey::new(Kind::Groups, id);
        if let Some((entry, _)) = store.get(&key).await {
            if let cache::Value::Groups(g) = &entry.value {
                return Ok(g.clone());
            }
        }
        if self.groups_recently_not_granted(Moment::now()) {
            return Err(Self::groups_not_granted());
        }
        let identities = info.identity_filter();
        let ttl = store.timeout().min(secs_until(info.exp().unwrap_or(0)));
        // A Groups 401 means the cached dependent token was revoked or expired early: drop it,
        // ask for a new grant, and try once more.
        let mut regranted = false;
        loop {
            let (dependent, fresh_grant) = self.dependent_tokens(token, id, identities).await?;
            let Some(groups_token) = dependent
                .iter()
                .find(|t| {
                    t.resource_server == GROUPS_RESOURCE_SERVER
                        || t.scope.split_whitespace().any(|s| s == GROUPS_SCOPE)
                })
                .map(|t| t.access_token.clone())
            else {
                self.groups_not_granted_at
                    .store(Moment::now().as_nanos().max(1), Ordering::Relaxed);
                if !self.groups_warned.swap(true, Ordering::Relaxed) {
                    log_warn!("{}", Self::groups_not_granted().message);
                }
                return Err(Self::groups_not_granted());
            };
            let client = self.client.clone();
            let wait = self.wait;
            let result = store
                .clone()
                .get_or_fetch(key, self.wait, move || {
                    async move {
                        let deadline = Instant::now() + wait;
                        let groups = client.my_groups(&groups_token, deadline).await?;
                        Ok(Fetched {
                            value: cache::Value::Groups(Arc::new(GroupList::new(groups))),
                            ttl,
                            identities,
                        })
                    }
                    .boxed()
                })
                .await;
            match result {
                Ok((entry, _)) => {
                    return match &entry.value {
                        cache::Value::Groups(g) => Ok(g.clone()),
                        _ => Err(wrong_kind()),
                    }
                }
                Err(e) if e.cause == Cause::TokenRejected && !regranted && !fresh_grant => {
                    log_info!(
                        "the Groups API refused a cached dependent token; asking for a new grant"
                    );
                    store
                        .remove(&CacheKey::new(Kind::DependentTokens, id))
                        .await;
                    regranted = true;
                }
                Err(e) => return Err(e.with_cause(Cause::Local)),
            }
        }
    }

    /// The caller's group ids, after the token passed every check (fetched through the
    /// dependent token and the Groups API, cached). Blocking.
    pub fn groups_of(&self, token: &str) -> Result<Arc<GroupList>, Error> {
        runtime::block_on(self.groups_of_async(token))?
    }

    pub async fn groups_of_async(&self, token: &str) -> Result<Arc<GroupList>, Error> {
        stats().checks.inc();
        let state = self.check_inner(token).await?;
        if let Groups::Available(g) = &state.groups {
            return Ok(g.clone());
        }
        if self.config.fetch_groups == FetchGroups::Never {
            return Err(Error::new(
                tc_status::TC_NOT_AUTHORIZED,
                "groups are not fetched (fetch_groups is \"never\")",
            ));
        }
        let id = self.token_id(token)?;
        match self.groups(token, id, &state.info).await? {
            Groups::Available(g) => Ok(g),
            Groups::NotGranted(why) => Err(Error::new(tc_status::TC_NOT_AUTHORIZED, why)),
            Groups::Unavailable(why) => Err(Error::unavailable(format!(
                "group memberships are unavailable ({why})"
            ))),
            Groups::NotFetched => Err(wrong_kind()),
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
                let id = self.local_id(token)?;
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
                state.groups = self.groups(token, id, &state.info).await?;
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
                Groups::NotGranted(why) => {
                    return Step::Done(Err(Error::new(
                        tc_status::TC_NOT_AUTHORIZED,
                        format!(
                            "the caller is none of the allowed identities, and groups cannot \
                             decide: {why}"
                        ),
                    )))
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
        let wanted = |t: &&DependentToken| {
            t.scope.split_whitespace().any(|s| s == scope) || t.resource_server == scope
        };
        let (mut tokens, mut fresh_grant) = self.dependent_tokens(token, id, identities).await?;
        if !fresh_grant && !tokens.iter().any(|t| wanted(&t)) && self.may_regrant(id) {
            // The user may have consented to more since the cached grant: ask once more (at
            // most once per token per cache lifetime), as globus-action-provider-tools does.
            log_info!("the cached dependent-token grant lacks a requested scope; asking again");
            cache::current_arc()
                .remove(&CacheKey::new(Kind::DependentTokens, id))
                .await;
            (tokens, fresh_grant) = self.dependent_tokens(token, id, identities).await?;
        }
        let _ = fresh_grant;
        tokens.iter().find(wanted).cloned().ok_or_else(|| {
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
        self.purge_id(id).await;
        Ok(())
    }

    async fn purge_id(&self, id: TokenIds) {
        let store = cache::current_arc();
        for kind in Kind::ALL {
            store.remove(&CacheKey::new(kind, id)).await;
        }
        stale::forget(&CacheKey::new(Kind::Introspection, id));
        stats().purges.inc();
    }

    /// Marks that this token's grant is asked again now; false when it already was within the
    /// last cache lifetime.
    fn may_regrant(&self, id: TokenIds) -> bool {
        let now = Moment::now();
        let lifetime = cache::current().timeout();
        if let Some(at) = self.regranted.get(&id.local) {
            if now.saturating_duration_since(at) < lifetime {
                return false;
            }
        }
        self.regranted.insert(id.local, now);
        true
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
        stale::forget_identity(&id);
        let hasher = self.hasher.clone();
        let fleet_wide = runtime::block_on(async move {
            cache::current_arc()
                .remove_identity(&id, |prefix| hasher.identity_index_text(prefix, &id))
                .await
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

/// Where an authorization stands.
enum Step {
    Done(Result<Authorization, Error>),
    /// Only the caller's groups can decide.
    NeedGroups(AuthState),
}

/// The caller's groups from the in-process layer.
fn local_groups(store: &CacheStore, id: LocalId, now: Moment) -> Option<Arc<GroupList>> {
    match store.get_local_at(&LocalKey::new(Kind::Groups, id), now) {
        Some((entry, _)) => match &entry.value {
            cache::Value::Groups(g) => Some(g.clone()),
            _ => None,
        },
        None => None,
    }
}

/// Whether an answer came from the network for this call (not from a cache).
fn fresh(source: Source) -> bool {
    matches!(source, Source::Network | Source::Coalesced)
}

/// The time from now until the unix instant `t` (zero when it has passed).
fn secs_until(t: i64) -> Duration {
    Duration::from_secs(t.saturating_sub(now_unix()).max(0) as u64)
}

fn wrong_kind() -> Error {
    Error::new(tc_status::TC_PANIC, "a cache entry of the wrong kind")
}
