//! Groups and dependent tokens: the grant, the Groups API, and their caching.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;

use super::{fresh, secs_until, wrong_kind, Checker, DEPENDENT_TOKEN_MARGIN_S};
use crate::auth_state::Groups;
use crate::cache::{self, CacheKey, CacheStore, Fetched, Kind, LocalId, LocalKey, TokenIds};
use crate::clock::Moment;
use crate::config::FetchGroups;
use crate::introspection::{GROUPS_RESOURCE_SERVER, GROUPS_SCOPE};
use crate::log::{log_info, log_warn};
use crate::model::{DependentToken, GroupList, IdentityFilter, TokenInfo};
use crate::process;
use crate::stats::stats;
use crate::status::{tc_status, Cause, Error};

impl Checker {
    pub(super) async fn dependent_tokens(
        &self,
        token: &str,
        id: TokenIds,
        identities: IdentityFilter,
        deadline: Instant,
    ) -> Result<(Arc<Vec<DependentToken>>, bool), Error> {
        let wait = self.stage_wait(deadline)?;
        let client = self.client()?;
        let token_copy = token.to_owned();
        let key = CacheKey::new(Kind::DependentTokens, id);
        let store = process::cache();
        let timeout = store.timeout();
        let fetched = store
            .get_or_fetch(key, wait, move || {
                async move {
                    let started = Moment::now();
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
                        started,
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
    pub(super) async fn groups(
        &self,
        token: &str,
        id: TokenIds,
        info: &TokenInfo,
        deadline: Instant,
    ) -> Result<Groups, Error> {
        // Boxed: the grant and the Groups call make a deep future, and every caller's with it.
        match Box::pin(self.fetch_groups(token, id, info, deadline)).await {
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
    pub(super) fn groups_not_granted() -> Error {
        Error::new(
            tc_status::TC_NOT_AUTHORIZED,
            format!(
                "this service may not read this user's group memberships: the dependent-token \
                 grant gave no Groups API token (the user has not consented to it, or this \
                 service's scope lacks the dependency: add {GROUPS_SCOPE} to it)"
            ),
        )
    }

    pub(super) async fn fetch_groups(
        &self,
        token: &str,
        id: TokenIds,
        info: &TokenInfo,
        deadline: Instant,
    ) -> Result<Arc<GroupList>, Error> {
        let store = process::cache();
        let key = CacheKey::new(Kind::Groups, id);
        if let Some((entry, _)) = store.get(&key).await {
            if let cache::Value::Groups(g) = &entry.value {
                return Ok(g.clone());
            }
        }
        let identities = info.identity_filter();
        let ttl = store.timeout().min(secs_until(info.exp().unwrap_or(0)));
        // A Groups 401 means the cached dependent token was revoked or expired early: drop it,
        // ask for a new grant, and try once more.
        let mut regranted = false;
        loop {
            let (dependent, fresh_grant) = self
                .dependent_tokens(token, id, identities, deadline)
                .await?;
            let Some(groups_token) = dependent
                .iter()
                .find(|t| {
                    t.resource_server == GROUPS_RESOURCE_SERVER
                        || t.scope.split_whitespace().any(|s| s == GROUPS_SCOPE)
                })
                .map(|t| t.access_token.clone())
            else {
                // This token's grant, cached with it: another user's grant may well have one
                // (consents are per user), so nothing is concluded for the checker.
                if !self.groups_warned.swap(true, Ordering::Relaxed) {
                    log_warn!("{}", Self::groups_not_granted().message);
                }
                return Err(Self::groups_not_granted());
            };
            let wait = self.stage_wait(deadline)?;
            let client = self.client()?;
            let result = store
                .clone()
                .get_or_fetch(key, wait, move || {
                    async move {
                        let started = Moment::now();
                        let deadline = Instant::now() + wait;
                        let groups = client.my_groups(&groups_token, deadline).await?;
                        Ok(Fetched {
                            value: cache::Value::Groups(Arc::new(GroupList::new(groups))),
                            ttl,
                            identities,
                            started,
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
        process::block_on(self.groups_of_async(token))?
    }

    pub async fn groups_of_async(&self, token: &str) -> Result<Arc<GroupList>, Error> {
        stats().checks.inc();
        let deadline = self.deadline();
        let state = self.check_inner(token, deadline).await?;
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
        match self.groups(token, id, &state.info, deadline).await? {
            Groups::Available(g) => Ok(g),
            Groups::NotGranted(why) => Err(Error::new(tc_status::TC_NOT_AUTHORIZED, why)),
            Groups::Unavailable(why) => Err(Error::unavailable(format!(
                "group memberships are unavailable ({why})"
            ))),
            Groups::NotFetched => Err(wrong_kind()),
        }
    }

    /// A dependent token for `scope` (or for a resource server named `scope`), after the
    /// caller's token passed every check.
    pub fn dependent_token(&self, token: &str, scope: &str) -> Result<DependentToken, Error> {
        process::block_on(self.dependent_token_async(token, scope))?
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
        let deadline = self.deadline();
        let id = self.token_id(token)?;
        let state = self.check_inner(token, deadline).await?;
        let identities = state.info.identity_filter();
        let wanted = |t: &&DependentToken| {
            t.scope.split_whitespace().any(|s| s == scope) || t.resource_server == scope
        };
        let (mut tokens, mut fresh_grant) = self
            .dependent_tokens(token, id, identities, deadline)
            .await?;
        if !fresh_grant && !tokens.iter().any(|t| wanted(&t)) && self.may_regrant(id)? {
            // The user may have consented to more since the cached grant: ask once more (at
            // most once per token per cache lifetime), as globus-action-provider-tools does.
            log_info!("the cached dependent-token grant lacks a requested scope; asking again");
            process::cache()
                .remove(&CacheKey::new(Kind::DependentTokens, id))
                .await;
            (tokens, fresh_grant) = self
                .dependent_tokens(token, id, identities, deadline)
                .await?;
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

    /// Marks that this token's grant is asked again now; false when it already was within the
    /// last cache lifetime.
    pub(super) fn may_regrant(&self, id: TokenIds) -> Result<bool, Error> {
        let now = Moment::now();
        let lifetime = process::cache().timeout();
        let net = self.net()?;
        if let Some(at) = net.regranted.get(&id.local) {
            if now.saturating_duration_since(at) < lifetime {
                return Ok(false);
            }
        }
        net.regranted.insert(id.local, now);
        Ok(true)
    }
}

/// The caller's groups from the in-process layer: kept beside the answer `info` when a lookup
/// found them before (one lookup serves both), else looked up and kept there.
pub(super) fn local_groups(
    store: &CacheStore,
    info: &TokenInfo,
    id: LocalId,
    now: Moment,
) -> Option<Arc<GroupList>> {
    if let Some(hint) = info.groups_hint(now) {
        return Some(hint.groups.clone());
    }
    let (entry, _) = store.get_local_at(&LocalKey::new(Kind::Groups, id), now)?;
    match &entry.value {
        cache::Value::Groups(g) => {
            info.keep_groups(g, entry.expires_at);
            Some(g.clone())
        }
        _ => None,
    }
}
