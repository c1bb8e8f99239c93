//! What a check learns about a caller, the rules it applies, and the result JSON.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::cache::Source;
use crate::config::{Config, ScopeMatch};
use crate::introspection::Introspection;
use crate::status::{tc_status, Error};

pub const IDENTITY_PREFIX: &str = "urn:globus:auth:identity:";
pub const GROUP_PREFIX: &str = "urn:globus:groups:id:";
pub const PUBLIC: &str = "public";
pub const ALL_AUTHENTICATED_USERS: &str = "all_authenticated_users";

/// An introspection answer with what every check derives from it computed once.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenInfo {
    pub intro: Introspection,
    /// `urn:globus:auth:identity:<id>` for each identity of the identity set.
    pub identity_principals: Vec<String>,
    /// `urn:globus:auth:identity:<sub>`.
    pub effective_identity: Option<String>,
}

impl TokenInfo {
    pub fn new(intro: Introspection) -> TokenInfo {
        let identity_principals = intro
            .identity_set
            .iter()
            .flatten()
            .map(|id| format!("{IDENTITY_PREFIX}{id}"))
            .collect();
        let effective_identity = intro.sub.as_ref().map(|s| format!("{IDENTITY_PREFIX}{s}"));
        TokenInfo {
            intro,
            identity_principals,
            effective_identity,
        }
    }

    pub fn identities(&self) -> &[String] {
        self.intro.identity_set.as_deref().unwrap_or(&[])
    }
}

/// The caller's group memberships, as far as this check knows them.
#[derive(Debug, Clone, PartialEq)]
pub enum Groups {
    /// Not needed by this check (`fetch_groups` "lazy" or "never").
    NotFetched,
    /// The Groups API (or the dependent-token grant) failed; the reason.
    Unavailable(String),
    Available(Arc<Vec<String>>),
}

/// The outcome of a successful check.
#[derive(Debug, Clone)]
pub struct AuthState {
    pub info: Arc<TokenInfo>,
    pub groups: Groups,
    pub source: Source,
    pub age: Duration,
}

/// `tc_authorize`'s request document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthorizeRequest {
    pub allowed_principals: Vec<String>,
    pub allow_public: bool,
    pub allow_all_authenticated_users: bool,
}

impl AuthorizeRequest {
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let doc: Value = serde_json::from_str(text).map_err(|e| {
            Error::invalid_argument(format!("the authorization request is not valid JSON: {e}"))
        })?;
        let obj = doc.as_object().ok_or_else(|| {
            Error::invalid_argument("the authorization request must be an object")
        })?;
        let mut req = AuthorizeRequest::default();
        for (key, value) in obj {
            match (key.as_str(), value) {
                ("allowed_principals", Value::Array(items)) => {
                    for item in items {
                        let s = item.as_str().ok_or_else(|| {
                            Error::invalid_argument("'allowed_principals' must hold only strings")
                        })?;
                        req.allowed_principals.push(s.to_string());
                    }
                }
                ("allow_public", Value::Bool(b)) => req.allow_public = *b,
                ("allow_all_authenticated_users", Value::Bool(b)) => {
                    req.allow_all_authenticated_users = *b
                }
                ("allowed_principals", _) => {
                    return Err(Error::invalid_argument(
                        "'allowed_principals' must be a list of strings",
                    ))
                }
                ("allow_public" | "allow_all_authenticated_users", _) => {
                    return Err(Error::invalid_argument(format!(
                        "'{key}' must be true or false"
                    )))
                }
                _ => {
                    return Err(Error::invalid_argument(format!(
                        "unknown key '{key}' in the authorization request"
                    )))
                }
            }
        }
        Ok(req)
    }

    /// Whether a group principal is allowed (only then are groups worth fetching).
    pub fn names_groups(&self) -> bool {
        self.allowed_principals
            .iter()
            .any(|p| p.starts_with(GROUP_PREFIX))
    }

    /// The principal that allows the caller without groups, if any, in the original's order.
    pub fn match_without_groups(&self, info: &TokenInfo) -> Option<String> {
        let allowed = |p: &str| self.allowed_principals.iter().any(|a| a == p);
        if self.allow_public && allowed(PUBLIC) {
            return Some(PUBLIC.into());
        }
        if self.allow_all_authenticated_users
            && allowed(ALL_AUTHENTICATED_USERS)
            && !info.identities().is_empty()
        {
            return Some(ALL_AUTHENTICATED_USERS.into());
        }
        info.identity_principals
            .iter()
            .find(|p| allowed(p))
            .cloned()
    }

    pub fn match_groups(&self, groups: &[String]) -> Option<String> {
        groups
            .iter()
            .map(|g| format!("{GROUP_PREFIX}{g}"))
            .find(|p| self.allowed_principals.iter().any(|a| a == p))
    }
}

/// Applies the original's rules, in its order, to an introspection answer.
pub fn validate(config: &Config, intro: &Introspection, now: i64) -> Result<(), Error> {
    if !intro.active {
        return Err(Error::new(
            tc_status::TC_INACTIVE_TOKEN,
            "the token is not active (unknown, revoked or expired at the authorization server)",
        ));
    }
    if let Some(nbf) = intro.nbf {
        if nbf >= now + config.leeway_s {
            return Err(Error::new(
                tc_status::TC_TOKEN_EXPIRED,
                format!("the token is not valid before {nbf} (now {now})"),
            ));
        }
    }
    match intro.exp {
        Some(exp) if exp > now - config.leeway_s => {}
        Some(exp) => {
            return Err(Error::new(
                tc_status::TC_TOKEN_EXPIRED,
                format!("the token expired at {exp} (now {now})"),
            ))
        }
        None => {
            return Err(Error::new(
                tc_status::TC_TOKEN_EXPIRED,
                "the token has no expiry time",
            ))
        }
    }
    let has = |s: &String| intro.scopes.iter().any(|t| t == s);
    let scopes_ok = match config.scope_match {
        ScopeMatch::Any => config.expected_scopes.iter().any(has),
        ScopeMatch::All => config.expected_scopes.iter().all(has),
    };
    if !scopes_ok {
        return Err(Error::new(
            tc_status::TC_INSUFFICIENT_SCOPE,
            format!(
                "the token lacks {} of the expected scopes {:?}",
                match config.scope_match {
                    ScopeMatch::Any => "any",
                    ScopeMatch::All => "some",
                },
                config.expected_scopes
            ),
        ));
    }
    if !intro.aud.contains(&config.expected_audience) {
        return Err(Error::new(
            tc_status::TC_WRONG_AUDIENCE,
            format!(
                "the token is not meant for audience {:?}",
                config.expected_audience
            ),
        ));
    }
    if intro.identity_set.is_none() {
        return Err(Error::new(
            tc_status::TC_INACTIVE_TOKEN,
            "the introspection answer carries no identity_set",
        ));
    }
    Ok(())
}

#[derive(Serialize)]
struct CacheView {
    source: &'static str,
    age_ms: u64,
}

#[derive(Serialize)]
struct AuthorizationView<'a> {
    authorized: bool,
    matched: &'a str,
}

#[derive(Serialize)]
struct StateView<'a> {
    active: bool,
    sub: Option<&'a str>,
    effective_identity: Option<&'a str>,
    identities: &'a [String],
    username: Option<&'a str>,
    name: Option<&'a str>,
    email: Option<&'a str>,
    client_id: Option<&'a str>,
    scopes: &'a [String],
    aud: &'a [String],
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    groups: Option<&'a [String]>,
    groups_status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    groups_error: Option<&'a str>,
    principals: Vec<&'a str>,
    cache: CacheView,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization: Option<AuthorizationView<'a>>,
}

impl AuthState {
    /// The result document of `tc_check` (and, with `matched`, of `tc_authorize`).
    pub fn to_json(&self, matched: Option<&str>) -> String {
        let i = &self.info.intro;
        let (groups, groups_status, groups_error) = match &self.groups {
            Groups::NotFetched => (None, "not_fetched", None),
            Groups::Unavailable(why) => (None, "unavailable", Some(why.as_str())),
            Groups::Available(g) => (Some(g.as_slice()), "available", None),
        };
        let group_principals: Vec<String> = groups
            .unwrap_or(&[])
            .iter()
            .map(|g| format!("{GROUP_PREFIX}{g}"))
            .collect();
        let principals = self
            .info
            .identity_principals
            .iter()
            .chain(group_principals.iter())
            .map(String::as_str)
            .collect();
        let view = StateView {
            active: true,
            sub: i.sub.as_deref(),
            effective_identity: self.info.effective_identity.as_deref(),
            identities: self.info.identities(),
            username: i.username.as_deref(),
            name: i.name.as_deref(),
            email: i.email.as_deref(),
            client_id: i.client_id.as_deref(),
            scopes: &i.scopes,
            aud: &i.aud,
            exp: i.exp,
            nbf: i.nbf,
            iat: i.iat,
            groups,
            groups_status,
            groups_error,
            principals,
            cache: CacheView {
                source: self.source.name(),
                age_ms: self.age.as_millis() as u64,
            },
            authorization: matched.map(|m| AuthorizationView {
                authorized: true,
                matched: m,
            }),
        };
        serde_json::to_string(&view).unwrap_or_else(|e| {
            Error::new(
                tc_status::TC_PANIC,
                format!("cannot render the result: {e}"),
            )
            .to_json()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(scope_match: ScopeMatch) -> Config {
        let mut c = Config::from_json(
            r#"{"client_id":"c","client_secret":"s","expected_scopes":["a","b"]}"#,
        )
        .unwrap();
        c.scope_match = scope_match;
        c
    }

    fn intro(scopes: &[&str]) -> Introspection {
        Introspection {
            active: true,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            aud: vec!["c".into()],
            exp: Some(1_000),
            nbf: Some(0),
            identity_set: Some(vec!["i1".into()]),
            sub: Some("i1".into()),
            ..Default::default()
        }
    }

    #[test]
    fn rules_in_order() {
        let any = config(ScopeMatch::Any);
        let all = config(ScopeMatch::All);
        assert!(validate(&any, &intro(&["a"]), 500).is_ok());
        assert_eq!(
            validate(&all, &intro(&["a"]), 500).unwrap_err().status,
            tc_status::TC_INSUFFICIENT_SCOPE
        );
        assert!(validate(&all, &intro(&["b", "a"]), 500).is_ok());
        // expiry with leeway: exp 1000 is still fine at 1002, not at 1003
        assert!(validate(&any, &intro(&["a"]), 1002).is_ok());
        assert_eq!(
            validate(&any, &intro(&["a"]), 1003).unwrap_err().status,
            tc_status::TC_TOKEN_EXPIRED
        );
        // expiry is checked before scopes
        assert_eq!(
            validate(&any, &intro(&["x"]), 2000).unwrap_err().status,
            tc_status::TC_TOKEN_EXPIRED
        );
        let mut i = intro(&["a"]);
        i.aud = vec!["other".into()];
        assert_eq!(
            validate(&any, &i, 500).unwrap_err().status,
            tc_status::TC_WRONG_AUDIENCE
        );
        i.aud = vec!["c".into()];
        i.identity_set = None;
        assert_eq!(
            validate(&any, &i, 500).unwrap_err().status,
            tc_status::TC_INACTIVE_TOKEN
        );
    }

    #[test]
    fn authorization_order() {
        let info = TokenInfo::new(intro(&["a"]));
        let req = AuthorizeRequest::from_json(
            r#"{"allowed_principals":["public","urn:globus:auth:identity:i1"],"allow_public":true}"#,
        )
        .unwrap();
        assert_eq!(req.match_without_groups(&info).as_deref(), Some("public"));
        let req = AuthorizeRequest::from_json(
            r#"{"allowed_principals":["public","urn:globus:groups:id:g"]}"#,
        )
        .unwrap();
        assert_eq!(req.match_without_groups(&info), None);
        assert!(req.names_groups());
        assert_eq!(
            req.match_groups(&["g".into()]).as_deref(),
            Some("urn:globus:groups:id:g")
        );
        assert!(AuthorizeRequest::from_json(r#"{"allowed":[]}"#).is_err());
    }
}
