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
///
/// Lean on purpose (a cache holds one per token): the identity principals and the effective
/// identity live only in the pre-rendered document, and are derived on demand elsewhere.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenInfo {
    pub intro: Introspection,
    /// The part of the result document that never changes for this answer, rendered once:
    /// `{"active":true,…,"iat":…,"principals":["urn:…identity:…",…` (the group principals, the
    /// rest of the document and the closing brace follow).
    rendered_prefix: Box<str>,
    /// Whether the rendered principals list is non-empty (the next item needs a comma).
    has_identity_principals: bool,
}

impl TokenInfo {
    pub fn new(intro: Introspection) -> TokenInfo {
        let mut info = TokenInfo {
            intro,
            rendered_prefix: Box::from(""),
            has_identity_principals: false,
        };
        info.has_identity_principals = !info.identities().is_empty();
        info.rendered_prefix = info.render_prefix().into_boxed_str();
        info
    }

    /// `urn:globus:auth:identity:<sub>`.
    pub fn effective_identity(&self) -> Option<String> {
        self.intro
            .sub
            .as_ref()
            .map(|s| format!("{IDENTITY_PREFIX}{s}"))
    }

    fn render_prefix(&self) -> String {
        let i = &self.intro;
        let effective_identity = self.effective_identity();
        let view = StateView {
            active: true,
            sub: i.sub.as_deref(),
            effective_identity: effective_identity.as_deref(),
            identities: self.identities(),
            username: i.username.as_deref(),
            name: i.name.as_deref(),
            email: i.email.as_deref(),
            client_id: i.client_id.as_deref(),
            scopes: &i.scopes,
            aud: &i.aud,
            exp: i.exp,
            nbf: i.nbf,
            iat: i.iat,
        };
        let mut doc = serde_json::to_string(&view).unwrap_or_else(|_| "{}".into());
        doc.pop(); // the closing brace: the per-check fields follow
        doc.push_str(",\"principals\":[");
        for (n, id) in self.identities().iter().enumerate() {
            if n > 0 {
                doc.push(',');
            }
            push_json_str(&mut doc, IDENTITY_PREFIX, id);
        }
        doc
    }

    /// The identity set, shared (the cache entries of this token hold the same list).
    pub fn identities_arc(&self) -> Arc<[String]> {
        match &self.intro.identity_set {
            Some(ids) => ids.clone(),
            None => Arc::from([]),
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
                        "unknown key '{}' in the authorization request",
                        crate::config::clip(key)
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
        info.identities()
            .iter()
            .find(|id| {
                self.allowed_principals
                    .iter()
                    .any(|a| a.strip_prefix(IDENTITY_PREFIX) == Some(id.as_str()))
            })
            .map(|id| format!("{IDENTITY_PREFIX}{id}"))
    }

    pub fn match_groups(&self, groups: &[String]) -> Option<String> {
        groups
            .iter()
            .find(|g| {
                self.allowed_principals
                    .iter()
                    .any(|a| a.strip_prefix(GROUP_PREFIX) == Some(g.as_str()))
            })
            .map(|g| format!("{GROUP_PREFIX}{g}"))
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

/// The fixed part of the result document.
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
}

/// Decimal digits without going through `fmt` (this is on every check's path).
fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &d in &buf[i..] {
        out.push(char::from(d));
    }
}

/// Appends `prefix` + `s` as one JSON string, escaped as serde_json escapes (no allocation:
/// this is on every check's path). `prefix` must need no escaping.
fn push_json_str(out: &mut String, prefix: &str, s: &str) {
    out.push('"');
    out.push_str(prefix);
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        if escaped.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escaped);
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

thread_local! {
    /// Where `to_c_doc` renders the per-check part, so that the document is allocated once, at
    /// its exact size (a C string handed out must not be reallocated to fit).
    static TAIL: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(512));
}

impl AuthState {
    /// The result document of `tc_check` (and, with `matched`, of `tc_authorize`): the
    /// pre-rendered fixed part, then groups, principals, cache and authorization.
    pub fn to_json(&self, matched: Option<&str>) -> String {
        let mut out = String::with_capacity(self.info.rendered_prefix.len() + 256);
        out.push_str(&self.info.rendered_prefix);
        self.write_tail(matched, &mut out);
        out
    }

    /// [`Self::to_json`] as the bytes of a C string (NUL-terminated), allocated once at its
    /// exact size: the hot path of `tc_check`.
    pub fn to_c_doc(&self, matched: Option<&str>) -> Vec<u8> {
        let build = |tail: &str| {
            let prefix = self.info.rendered_prefix.as_bytes();
            let mut doc = Vec::with_capacity(prefix.len() + tail.len() + 1);
            doc.extend_from_slice(prefix);
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

    /// Everything after the pre-rendered prefix.
    fn write_tail(&self, matched: Option<&str>, out: &mut String) {
        // The prefix ends inside the principals list, after the identity principals.
        let groups: &[String] = match &self.groups {
            Groups::Available(g) => g,
            _ => &[],
        };
        for (n, g) in groups.iter().enumerate() {
            if n > 0 || self.info.has_identity_principals {
                out.push(',');
            }
            push_json_str(out, GROUP_PREFIX, g);
        }
        out.push(']');
        match &self.groups {
            Groups::Available(g) => {
                out.push_str(",\"groups\":[");
                for (n, g) in g.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    push_json_str(out, "", g);
                }
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
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for s in [
            "",
            "plain",
            "q\"uote\\back/slash",
            "\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}",
            "é ü 漢字 🦀",
            "mixed\u{1}é\"",
        ] {
            let mut out = String::new();
            push_json_str(&mut out, "", s);
            assert_eq!(out, serde_json::to_string(s).unwrap(), "{s:?}");
            let mut out = String::new();
            push_json_str(&mut out, GROUP_PREFIX, s);
            assert_eq!(
                out,
                serde_json::to_string(&format!("{GROUP_PREFIX}{s}")).unwrap()
            );
        }
    }

    #[test]
    fn result_document_is_complete_json() {
        let info = Arc::new(TokenInfo::new(intro(&["a"])));
        for groups in [
            Groups::NotFetched,
            Groups::Unavailable("down \"quoted\"".into()),
            Groups::Available(Arc::new(vec!["g1".into(), "g2".into()])),
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
                Groups::NotFetched => assert_eq!(doc["groups"], Value::Null),
            }
        }
        // Without identities, the group principals start the list.
        let mut bare = intro(&["a"]);
        bare.identity_set = Some(Arc::from([]));
        let state = AuthState {
            info: Arc::new(TokenInfo::new(bare)),
            groups: Groups::Available(Arc::new(vec!["g1".into()])),
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
