//! What a check learns about a caller, the rules it applies, and the result JSON.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::{Config, ScopeMatch};
use crate::json::{push_json_str, push_u64};
use crate::status::{tc_status, Error};

use crate::model::{GroupList, Source, TokenInfo, GROUP_PREFIX};
pub const PUBLIC: &str = "public";
pub const ALL_AUTHENTICATED_USERS: &str = "all_authenticated_users";

/// The caller's group memberships, as far as this check knows them.
#[derive(Debug, Clone, PartialEq)]
pub enum Groups {
    /// Not needed by this check (`fetch_groups` "lazy" or "never").
    NotFetched,
    /// The Groups API (or the dependent-token grant) failed; the reason.
    Unavailable(String),
    /// This service may not read groups: its scope lacks the Groups API dependency, so the
    /// dependent-token grant gives no Groups token; the message names the scope to add.
    NotGranted(String),
    Available(Arc<GroupList>),
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
        use serde::Deserialize;
        use serde_path_to_error::Segment;

        /// The request as written: only these keys, each optional.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            allowed_principals: Vec<String>,
            #[serde(default)]
            allow_public: bool,
            #[serde(default)]
            allow_all_authenticated_users: bool,
        }
        let done = |raw: Raw| AuthorizeRequest {
            allowed_principals: raw.allowed_principals,
            allow_public: raw.allow_public,
            allow_all_authenticated_users: raw.allow_all_authenticated_users,
        };
        // Per request: straight from the text into the struct (no `Value`; keys are matched
        // without copying). Only an object: serde would read a struct from a list too.
        if text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with('{')
        {
            if let Ok(raw) = serde_json::from_str::<Raw>(text) {
                return Ok(done(raw));
            }
        }
        // Otherwise through `Value`, at leisure: to find out why (serde's messages are not shown,
        // they quote the value, which may be a token; the key path says which message applies).
        let doc: Value = serde_json::from_str(text).map_err(|e| {
            Error::invalid_argument(format!("the authorization request is not valid JSON: {e}"))
        })?;
        if !doc.is_object() {
            return Err(Error::invalid_argument(
                "the authorization request must be an object",
            ));
        }
        let e = match serde_path_to_error::deserialize::<_, Raw>(&doc) {
            // Refused from the text, accepted from `Value`: a key given twice, which serde
            // refuses in a struct; `Value` keeps the last one, as this parser always did.
            Ok(raw) => return Ok(done(raw)),
            Err(e) => e,
        };
        let path: Vec<&Segment> = e.path().iter().collect();
        Err(Error::invalid_argument(match path.as_slice() {
            [Segment::Map { key }, Segment::Seq { .. }, ..] if key == "allowed_principals" => {
                "'allowed_principals' must hold only strings".to_string()
            }
            [Segment::Map { key }] if key == "allowed_principals" => {
                "'allowed_principals' must be a list of strings".to_string()
            }
            [Segment::Map { key }]
                if key == "allow_public" || key == "allow_all_authenticated_users" =>
            {
                format!("'{key}' must be true or false")
            }
            [Segment::Map { key }, ..] => format!(
                "unknown key '{}' in the authorization request",
                crate::status::clip(key)
            ),
            _ => "the authorization request is not valid".to_string(),
        }))
    }
}

/// Applies the original's rules, in its order, to an introspection answer.
pub fn validate(config: &Config, info: &TokenInfo, now: i64) -> Result<(), Error> {
    if !info.active() {
        return Err(Error::new(
            tc_status::TC_INACTIVE_TOKEN,
            "the token is not active (unknown, revoked or expired at the authorization server)",
        ));
    }
    if let Some(nbf) = info.nbf() {
        if nbf >= now + config.leeway_s {
            return Err(Error::new(
                tc_status::TC_TOKEN_EXPIRED,
                format!("the token is not valid before {nbf} (now {now})"),
            ));
        }
    }
    match info.exp() {
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
    // The rest depends only on the answer and the configuration: checked once per pair.
    if info.passed_rules(config.rules_id) {
        return Ok(());
    }
    let has = |s: &String| info.has_scope(s);
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
        )
        .with_token_scopes(info.scopes()));
    }
    if !info.has_audience(&config.expected_audience) {
        return Err(Error::new(
            tc_status::TC_WRONG_AUDIENCE,
            format!(
                "the token is not meant for audience {:?}",
                config.expected_audience
            ),
        ));
    }
    info.mark_passed_rules(config.rules_id);
    Ok(())
}

thread_local! {
    /// Where `to_c_doc` renders the per-check part, so that the document is allocated once, at
    /// its exact size (a C string handed out must not be reallocated to fit).
    static TAIL: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(512));
}

impl AuthState {
    /// The result document of `tc_check` (and, with `matched`, of `tc_authorize`): the
    /// answer's fixed part, principals, groups, cache and authorization.
    pub fn to_json(&self, matched: Option<&str>) -> String {
        let mut doc = self.to_c_doc(matched);
        doc.pop();
        String::from_utf8(doc).expect("the document is rendered from strings")
    }

    /// [`Self::to_json`] as the bytes of a C string (NUL-terminated), allocated once at its
    /// exact size: the hot path of `tc_check`.
    pub fn to_c_doc(&self, matched: Option<&str>) -> Vec<u8> {
        let build = |tail: &str| {
            let mut doc = Vec::with_capacity(self.info.head_len() + tail.len() + 1);
            self.info.write_head(&mut doc);
            doc.extend_from_slice(tail.as_bytes());
            doc.push(0);
            doc
        };
        let rendered = TAIL.try_with(|cell| {
            let mut tail = cell.try_borrow_mut().ok()?;
            tail.clear();
            self.write_tail(matched, &mut tail);
            let doc = build(&tail);
            if tail.capacity() > 1 << 16 {
                *tail = String::with_capacity(512);
            }
            Some(doc)
        });
        match rendered {
            Ok(Some(doc)) => doc,
            // The thread is exiting (or, impossibly, re-entered): render without the buffer.
            _ => {
                let mut tail = String::new();
                self.write_tail(matched, &mut tail);
                build(&tail)
            }
        }
    }

    /// Everything after the identity principals.
    fn write_tail(&self, matched: Option<&str>, out: &mut String) {
        if let Groups::Available(g) = &self.groups {
            for (n, id) in g.list().items().enumerate() {
                if n > 0 || self.info.identity_count() > 0 {
                    out.push(',');
                }
                out.push('"');
                out.push_str(GROUP_PREFIX);
                out.push_str(id);
                out.push('"');
            }
        }
        out.push(']');
        match &self.groups {
            Groups::Available(g) => {
                out.push_str(",\"groups\":[");
                out.push_str(g.list().as_str());
                out.push_str("],\"groups_status\":\"available\"");
            }
            Groups::NotFetched => {
                out.push_str(",\"groups\":null,\"groups_status\":\"not_fetched\"");
            }
            Groups::Unavailable(why) => {
                out.push_str(
                    ",\"groups\":null,\"groups_status\":\"unavailable\",\"groups_error\":",
                );
                push_json_str(out, "", why);
            }
            Groups::NotGranted(why) => {
                out.push_str(
                    ",\"groups\":null,\"groups_status\":\"not_granted\",\"groups_error\":",
                );
                push_json_str(out, "", why);
            }
        }
        out.push_str(",\"cache\":{\"source\":\"");
        out.push_str(self.source.name());
        out.push_str("\",\"age_ms\":");
        push_u64(out, self.age.as_millis() as u64);
        out.push('}');
        if let Some(m) = matched {
            out.push_str(",\"authorization\":{\"authorized\":true,\"matched\":");
            push_json_str(out, "", m);
            out.push('}');
        }
        out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Introspection;

    fn config(scope_match: ScopeMatch) -> Config {
        let mut c = Config::from_json(
            r#"{"client_id":"c","client_secret":"s","expected_scopes":["a","b"]}"#,
        )
        .unwrap();
        c.scope_match = scope_match;
        c
    }

    fn intro(scopes: &[&str]) -> TokenInfo {
        TokenInfo::new(raw(scopes))
    }

    fn raw(scopes: &[&str]) -> Introspection {
        Introspection {
            active: true,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            aud: vec!["c".into()],
            exp: Some(1_000),
            nbf: Some(0),
            identity_set: Some(vec!["i1".into()].into()),
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
        let mut i = raw(&["a"]);
        i.aud = vec!["other".into()];
        assert_eq!(
            validate(&any, &TokenInfo::new(i.clone()), 500)
                .unwrap_err()
                .status,
            tc_status::TC_WRONG_AUDIENCE
        );
        i.aud = vec!["c".into()];
        // No identity set: valid (with no identities), not "inactive".
        i.identity_set = None;
        assert!(validate(&any, &TokenInfo::new(i), 500).is_ok());
    }

    #[test]
    fn result_document_is_complete_json() {
        let info = Arc::new(intro(&["a"]));
        for groups in [
            Groups::NotFetched,
            Groups::Unavailable("down \"quoted\"".into()),
            Groups::Available(Arc::new(GroupList::new(["g1", "g2"]))),
        ] {
            let state = AuthState {
                info: info.clone(),
                groups: groups.clone(),
                source: Source::Memory,
                age: Duration::from_millis(1500),
            };
            let text = state.to_json(Some("public"));
            assert_eq!(
                state.to_c_doc(Some("public")),
                [text.as_bytes(), b"\0"].concat()
            );
            let doc: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(doc["active"], true);
            assert_eq!(doc["effective_identity"], "urn:globus:auth:identity:i1");
            assert_eq!(doc["cache"]["age_ms"], 1500);
            assert_eq!(doc["cache"]["source"], "memory");
            assert_eq!(doc["authorization"]["matched"], "public");
            let principals = doc["principals"].as_array().unwrap();
            match groups {
                Groups::Available(_) => {
                    assert_eq!(principals.len(), 3);
                    assert_eq!(doc["groups"], serde_json::json!(["g1", "g2"]));
                    assert_eq!(principals[2], "urn:globus:groups:id:g2");
                }
                Groups::Unavailable(_) => {
                    assert_eq!(doc["groups_error"], "down \"quoted\"");
                    assert_eq!(principals.len(), 1);
                }
                Groups::NotGranted(_) => unreachable!("not among the cases"),
                Groups::NotFetched => assert_eq!(doc["groups"], Value::Null),
            }
        }
        // Without identities, the group principals start the list.
        let mut bare = raw(&["a"]);
        bare.identity_set = Some(Arc::from([]));
        let state = AuthState {
            info: Arc::new(TokenInfo::new(bare)),
            groups: Groups::Available(Arc::new(GroupList::new(["g1"]))),
            source: Source::Network,
            age: Duration::ZERO,
        };
        let doc: Value = serde_json::from_str(&state.to_json(None)).unwrap();
        assert_eq!(
            doc["principals"],
            serde_json::json!(["urn:globus:groups:id:g1"])
        );
        assert_eq!(doc["identities"], serde_json::json!([]));
    }

    #[test]
    fn authorization_order() {
        use crate::policy::Policy;
        let info = intro(&["a"]);
        let compile = |text: &str| Policy::from_json(text).unwrap();
        let p = compile(
            r#"{"allowed_principals":["public","urn:globus:auth:identity:i1"],"allow_public":true}"#,
        );
        assert_eq!(p.match_without_groups(&info), Some(0));
        let p = compile(r#"{"allowed_principals":["public","urn:globus:groups:id:g"]}"#);
        assert_eq!(p.match_without_groups(&info), None);
        assert!(p.names_groups());
        let g = p.match_groups(&GroupList::new(["x", "g"])).unwrap();
        assert_eq!(p.principal(g as usize), Some("urn:globus:groups:id:g"));
        // The identity set's order decides, not the request's.
        let two = TokenInfo::new(Introspection {
            identity_set: Some(vec!["i2".into(), "i\"1".into()].into()),
            ..raw(&["a"])
        });
        let p = compile(
            r#"{"allowed_principals":["urn:globus:auth:identity:i\"1","urn:globus:auth:identity:i2"]}"#,
        );
        assert_eq!(p.match_without_groups(&two), Some(1));
        assert!(AuthorizeRequest::from_json(r#"{"allowed":[]}"#).is_err());
    }
}
