//! Authorization: whether the caller is one of the allowed principals.

use std::sync::Arc;

use super::{local_groups, wrong_kind, Checker};
use crate::auth_state::{AuthState, AuthorizeRequest, Groups};
use crate::config::FetchGroups;
use crate::policy::Policy;
use crate::process;
use crate::stats::stats;
use crate::status::{tc_status, Error};

/// An authorization's outcome: the state and the index of the allowed principal that matched.
pub type Matched = Result<(AuthState, u32), Error>;

/// The outcome of a successful authorization.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub state: AuthState,
    /// The allowed principal that matched.
    pub matched: String,
}

impl Authorization {
    fn new(policy: &Policy, (state, index): (AuthState, u32)) -> Authorization {
        let matched = policy
            .principal(index as usize)
            .unwrap_or_default()
            .to_owned();
        Authorization { state, matched }
    }
}

impl Checker {
    /// Checks the token, then whether the caller is one of the allowed principals. Answers from
    /// the in-process cache without touching the runtime when it can.
    pub fn authorize(
        &self,
        token: &str,
        request: &AuthorizeRequest,
    ) -> Result<Authorization, Error> {
        let policy = Policy::once(request)?;
        self.authorize_with(token, &policy)
            .map(|m| Authorization::new(&policy, m))
    }

    /// `authorize` from the in-process cache only: `Ok(None)` when it needs the network.
    pub fn try_authorize(
        &self,
        token: &str,
        request: &AuthorizeRequest,
    ) -> Result<Option<Result<Authorization, Error>>, Error> {
        let policy = Policy::once(request)?;
        Ok(self
            .try_authorize_with(token, &policy)?
            .map(|r| r.map(|m| Authorization::new(&policy, m))))
    }

    pub async fn authorize_async(
        &self,
        token: &str,
        request: &AuthorizeRequest,
    ) -> Result<Authorization, Error> {
        let policy = Policy::once(request)?;
        stats().checks.inc();
        self.authorize_inner(token, &policy)
            .await
            .map(|m| Authorization::new(&policy, m))
    }

    /// [`Self::authorize`] with a compiled policy: the state and the index of the allowed
    /// principal that matched.
    pub fn authorize_with(&self, token: &str, policy: &Policy) -> Matched {
        if let Some(result) = self.try_authorize_with(token, policy)? {
            return result;
        }
        process::block_on(self.authorize_inner(token, policy))?
    }

    /// [`Self::try_authorize`] with a compiled policy: from the in-process cache only, with
    /// neither rendering nor allocation.
    pub fn try_authorize_with(
        &self,
        token: &str,
        policy: &Policy,
    ) -> Result<Option<Matched>, Error> {
        self.try_authorize_inner(token, policy, true)
    }

    /// [`Self::try_authorize_with`] for the answer handle, which does not carry the caller's
    /// groups: a state it remembers the authorization of may leave them out (one cache miss
    /// fewer at many users).
    pub fn try_authorize_answer_with(
        &self,
        token: &str,
        policy: &Policy,
    ) -> Result<Option<Matched>, Error> {
        self.try_authorize_inner(token, policy, false)
    }

    fn try_authorize_inner(
        &self,
        token: &str,
        policy: &Policy,
        with_groups: bool,
    ) -> Result<Option<Matched>, Error> {
        stats().checks.inc();
        let Some(hit) = self.lookup_local_hit(token)? else {
            return Ok(None);
        };
        let mut state = match hit.state {
            Err(e) => return Ok(Some(Err(e))),
            Ok(state) => state,
        };
        let by_groups = self.may_use_groups(policy);
        // The groups kept beside the answer, and the last policy they authorized: this one,
        // most of the time (a service has few), and then neither list is read again.
        if let Some(hint) = by_groups.then(|| state.info.groups_hint(hit.now)).flatten() {
            if let Some(index) = hint.remembered(policy.memo_id()) {
                if with_groups {
                    state.groups = Groups::Available(hint.groups.clone());
                }
                return Ok(Some(Ok((state, index))));
            }
        }
        match self.authorization_step(policy, state) {
            Step::Done(result) => Ok(Some(result)),
            Step::NeedGroups(mut state) => {
                let Some(groups) = local_groups(&hit.process.cache, &state.info, hit.id, hit.now)
                else {
                    return Ok(None);
                };
                state.groups = Groups::Available(groups.clone());
                match self.authorization_step(policy, state) {
                    Step::Done(result) => {
                        if let Ok((state, index)) = &result {
                            // Remembered beside the very groups it was decided with.
                            match state.info.groups_hint(hit.now) {
                                Some(hint) if Arc::ptr_eq(&hint.groups, &groups) => {
                                    hint.remember(policy.memo_id(), *index)
                                }
                                _ => {}
                            }
                        }
                        Ok(Some(result))
                    }
                    Step::NeedGroups(_) => Ok(None),
                }
            }
        }
    }

    async fn authorize_inner(&self, token: &str, policy: &Policy) -> Matched {
        let deadline = self.deadline();
        let state = self.check_inner(token, deadline).await?;
        match self.authorization_step(policy, state) {
            Step::Done(result) => result,
            Step::NeedGroups(mut state) => {
                let id = self.token_id(token)?;
                state.groups = self.groups(token, id, &state.info, deadline).await?;
                match self.authorization_step(policy, state) {
                    Step::Done(result) => result,
                    Step::NeedGroups(_) => Err(wrong_kind()),
                }
            }
        }
    }

    /// Whether the caller's groups may decide an authorization by this policy.
    fn may_use_groups(&self, policy: &Policy) -> bool {
        policy.names_groups() && self.config.fetch_groups != FetchGroups::Never
    }

    /// The original `check_authorization`, once the token passed: public, then all
    /// authenticated users, then identities, and groups only when nothing cheaper matched.
    fn authorization_step(&self, policy: &Policy, state: AuthState) -> Step {
        if let Some(matched) = policy.match_without_groups(&state.info) {
            return Step::Done(Ok((state, matched)));
        }
        if self.may_use_groups(policy) {
            match &state.groups {
                Groups::NotFetched => return Step::NeedGroups(state),
                Groups::Available(groups) => {
                    if let Some(matched) = policy.match_groups(groups) {
                        return Step::Done(Ok((state, matched)));
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
        let why = if state.info.has_identity_set() {
            "the caller is none of the allowed principals"
        } else {
            // An active token the server gave no identity set for (not Globus Auth, or it was
            // not asked): valid, but it stands for no identity any principal could name.
            "the caller is none of the allowed principals: the introspection answer carries no \
             identity_set, so the token stands for no identity"
        };
        Step::Done(Err(Error::new(tc_status::TC_NOT_AUTHORIZED, why)))
    }
}

/// Where an authorization stands.
enum Step {
    Done(Matched),
    /// Only the caller's groups can decide.
    NeedGroups(AuthState),
}
