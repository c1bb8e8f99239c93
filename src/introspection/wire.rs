//! What Globus Auth and the Groups API answer, read straight from the response body into
//! `#[derive(Deserialize)]` wire types, and turned into the model's types.
//!
//! Parsing fails closed: a document that is not what the protocol promises is an error, never an
//! "active" token or a group membership. Fields the services add and we do not use are ignored;
//! a field we use must have its type (`null` counts as absent). A key given twice is refused.
//!
//! Errors name the key path (`identity_set[2]`, `[0].expires_in`, through
//! `serde_path_to_error`) and what it must be. serde's own messages are never shown whole: they
//! quote the value, which may be a token.

use std::sync::Arc;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use crate::model::{DependentToken, Introspection};
use crate::status::{clip, Error};

/// The part of an introspection answer read first: an inactive token is inactive whatever else
/// the answer holds.
#[derive(Deserialize)]
struct WireActive {
    active: Option<bool>,
}

/// An active token's introspection (RFC 7662, with Globus' `identity_set`).
#[derive(Deserialize)]
struct WireIntrospection {
    scope: Option<String>,
    sub: Option<String>,
    username: Option<String>,
    name: Option<String>,
    email: Option<String>,
    aud: Option<Audience>,
    client_id: Option<String>,
    exp: Option<NumericDate>,
    nbf: Option<NumericDate>,
    iat: Option<NumericDate>,
    identity_set: Option<Vec<String>>,
    /// Every other member (`iss`, `token_type`, `session_info`, …): kept for those who want the
    /// answer whole.
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

/// The other members of an answer are kept up to this size (rendered); beyond, none are.
const MAX_EXTRA_BYTES: usize = 8 * 1024;

/// One item of the dependent-token grant's answer (a JSON list of them).
#[derive(Deserialize)]
struct WireDependentToken {
    access_token: String,
    expires_in: i64,
    scope: Option<String>,
    resource_server: Option<String>,
    token_type: Option<String>,
    refresh_token: Option<String>,
}

/// One group of the Groups API's `my_groups` answer (a JSON list of them).
#[derive(Deserialize)]
struct WireGroup {
    id: String,
    my_memberships: Option<Vec<WireMembership>>,
}

#[derive(Deserialize)]
struct WireMembership {
    role: Option<String>,
    status: Option<String>,
}

/// RFC 7519's NumericDate: an integer, or a number with a fraction (truncated towards zero),
/// saturating at the ends of `i64`.
struct NumericDate(i64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumericDate;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumericDate, E> {
                Ok(NumericDate(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumericDate, E> {
                Ok(NumericDate(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumericDate, E> {
                // `as` truncates and saturates; JSON has no NaN or infinity.
                Ok(NumericDate(v as i64))
            }
        }
        d.deserialize_any(V)
    }
}

/// `aud`: one string or a list of them (RFC 7662 allows both).
struct Audience(Vec<String>);

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Audience;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Audience, E> {
                Ok(Audience(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Audience, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(64));
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Audience(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Which answer is read: names it in messages and says what its top level must be.
#[derive(Clone, Copy)]
enum Answer {
    Introspection,
    DependentTokens,
    Groups,
}

impl Answer {
    fn error(self, what: &str) -> Error {
        let name = match self {
            Answer::Introspection => "introspection",
            Answer::DependentTokens => "dependent-token",
            Answer::Groups => "Groups API",
        };
        Error::unavailable(format!("malformed {name} answer: {what}"))
    }

    fn top(self) -> &'static str {
        match self {
            Answer::Introspection => "not a JSON object",
            Answer::DependentTokens | Answer::Groups => "not a JSON list",
        }
    }

    /// Reads `body` into `T`, with an error that names the key path and never quotes a value.
    fn read<'a, T: Deserialize<'a>>(self, body: &'a [u8]) -> Result<T, Error> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| self.explain(e))?;
        de.end()
            .map_err(|_| self.error("not valid JSON (something follows the document)"))?;
        Ok(value)
    }

    fn explain(self, e: serde_path_to_error::Error<serde_json::Error>) -> Error {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() || inner.is_io() {
            return self.error("not valid JSON");
        }
        let why = inner.to_string();
        let why = why
            .strip_suffix(&format!(
                " at line {} column {}",
                inner.line(),
                inner.column()
            ))
            .unwrap_or(&why);
        let at_top = path == ".";
        // "invalid type: <the value, quoted>, expected <what the type reads>": only the part
        // after the last ", expected " is ours to show (the value may hold that text too).
        let reason = if let Some((_, expected)) = why.rsplit_once(", expected ") {
            if at_top {
                return self.error(self.top());
            }
            let expected = match expected {
                e if e.starts_with("struct ") => "an object",
                "a sequence" => "a list",
                "i64" => "an integer",
                "a boolean" => "true or false",
                e => e,
            };
            format!("is not {expected}")
        } else if let Some(field) = why.strip_prefix("missing field ") {
            format!("lacks {field}")
        } else if let Some(field) = why.strip_prefix("duplicate field ") {
            format!("has {field} twice")
        } else {
            "is not valid".to_string()
        };
        if at_top {
            self.error(&format!("the answer {reason}"))
        } else {
            self.error(&format!("'{}' {reason}", clip(&path)))
        }
    }
}

/// Parses an introspection answer (RFC 7662 with Globus' `identity_set`). Fails closed.
pub fn parse_introspection(body: &[u8]) -> Result<Introspection, Error> {
    let answer = Answer::Introspection;
    match answer.read::<WireActive>(body)?.active {
        Some(true) => {}
        Some(false) => return Ok(Introspection::default()),
        None => return Err(answer.error("'active' is missing")),
    }
    let wire: WireIntrospection = answer.read(body)?;
    let Some(NumericDate(exp)) = wire.exp else {
        return Err(answer.error("an active token without 'exp'"));
    };
    Ok(Introspection {
        active: true,
        scopes: wire
            .scope
            .map(|s| s.split_whitespace().map(String::from).collect())
            .unwrap_or_default(),
        sub: wire.sub,
        username: wire.username,
        name: wire.name,
        email: wire.email,
        aud: wire.aud.map(|a| a.0).unwrap_or_default(),
        client_id: wire.client_id,
        exp: Some(exp),
        nbf: wire.nbf.map(|d| d.0),
        iat: wire.iat.map(|d| d.0),
        identity_set: wire.identity_set.map(Arc::from),
        extra: extra_members(wire.extra),
    })
}

/// The answer's other members as one JSON object's text (the `active` member is not one).
fn extra_members(mut members: serde_json::Map<String, serde_json::Value>) -> Option<Box<str>> {
    members.remove("active");
    if members.is_empty() {
        return None;
    }
    let text = serde_json::Value::Object(members).to_string();
    (text.len() <= MAX_EXTRA_BYTES).then(|| text.into_boxed_str())
}

/// Parses the dependent-token grant's answer: a JSON list of tokens (the only shape the real
/// service sends). `expires_in` counts from `now`.
pub fn parse_dependent_tokens(body: &[u8], now: i64) -> Result<Vec<DependentToken>, Error> {
    let items: Vec<WireDependentToken> = Answer::DependentTokens.read(body)?;
    Ok(items
        .into_iter()
        .map(|t| DependentToken {
            scope: t.scope.unwrap_or_default(),
            access_token: t.access_token,
            resource_server: t.resource_server.unwrap_or_default(),
            token_type: t.token_type.unwrap_or_else(|| "bearer".into()),
            expires_at: now.saturating_add(t.expires_in.max(0)),
            refresh_token: t.refresh_token,
        })
        .collect())
}

/// Ids of the groups where one of the caller's memberships is active as member, manager or admin.
pub fn parse_groups(body: &[u8]) -> Result<Vec<String>, Error> {
    let groups: Vec<WireGroup> = Answer::Groups.read(body)?;
    let mut out: Vec<String> = Vec::new();
    for group in groups {
        let counts = group.my_memberships.unwrap_or_default().iter().any(|m| {
            m.status.as_deref() == Some("active")
                && matches!(m.role.as_deref(), Some("member" | "manager" | "admin"))
        });
        if counts && !out.contains(&group.id) {
            out.push(group.id);
        }
    }
    Ok(out)
}

/// The OAuth2 `error` code of an error answer (RFC 6749 §5.2), if it has one.
pub fn oauth_error_code(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct WireOAuthError {
        error: Option<String>,
    }
    serde_json::from_slice::<WireOAuthError>(body).ok()?.error
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bytes(v: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn message(r: Result<impl std::fmt::Debug, Error>) -> String {
        r.unwrap_err().message
    }

    #[test]
    fn introspection_fails_closed() {
        let parse = |v| parse_introspection(&bytes(v));
        assert!(!parse(json!({"active": false})).unwrap().active);
        // Inactive is inactive, whatever else the answer holds.
        assert!(!parse(json!({"active": false, "exp": "x"})).unwrap().active);
        assert!(parse(json!({"active": "true"})).is_err());
        assert!(parse(json!({"active": true})).is_err());
        assert!(parse(json!({"active": true, "exp": "1"})).is_err());
        assert!(parse(json!([1])).is_err());
        assert!(parse_introspection(br#"{"active": true, "active": false}"#).is_err());
        assert!(parse_introspection(br#"{"active": false} {}"#).is_err());
        let i = parse(
            json!({"active": true, "exp": 5, "scope": "a b", "aud": "x", "identity_set": ["i"]}),
        )
        .unwrap();
        assert_eq!(i.scopes, vec!["a", "b"]);
        assert_eq!(i.aud, vec!["x"]);
        assert_eq!(i.identity_set.as_deref(), Some(&["i".to_string()][..]));
        let i = parse(json!({"active": true, "exp": 5.9, "nbf": u64::MAX, "aud": null})).unwrap();
        assert_eq!((i.exp, i.nbf), (Some(5), Some(i64::MAX)));
        assert!(i.aud.is_empty() && i.identity_set.is_none());
    }

    #[test]
    fn errors_name_the_key_and_never_quote_the_value() {
        let cases = [
            (
                json!({"active": 1}),
                "malformed introspection answer: 'active' is not true or false",
            ),
            (
                json!({}),
                "malformed introspection answer: 'active' is missing",
            ),
            (
                json!("SECRET"),
                "malformed introspection answer: not a JSON object",
            ),
            (
                // serde's message quotes the value: only its own last ", expected …" is used.
                json!({"active": true, "exp": "SECRET, expected x"}),
                "malformed introspection answer: 'exp' is not a number",
            ),
            (
                json!({"active": true, "exp": 1, "identity_set": ["a", 7]}),
                "malformed introspection answer: 'identity_set[1]' is not a string",
            ),
            (
                json!({"active": true, "exp": "SECRET"}),
                "malformed introspection answer: 'exp' is not a number",
            ),
            (
                json!({"active": true, "exp": 1, "aud": {"SECRET": 1}}),
                "malformed introspection answer: 'aud' is not a string or a list of strings",
            ),
        ];
        for (doc, want) in cases {
            let got = message(parse_introspection(&bytes(doc.clone())));
            assert_eq!(got, want, "{doc}");
        }
        let e = message(parse_dependent_tokens(
            &bytes(json!([{"access_token": "SECRET", "expires_in": "SECRET"}])),
            0,
        ));
        assert_eq!(
            e,
            "malformed dependent-token answer: '[0].expires_in' is not an integer"
        );
        let e = message(parse_dependent_tokens(
            &bytes(json!([{"expires_in": 1}])),
            0,
        ));
        assert_eq!(
            e,
            "malformed dependent-token answer: '[0]' lacks `access_token`"
        );
        let e = message(parse_groups(&bytes(
            json!([{"id": "g", "my_memberships": "SECRET"}]),
        )));
        assert_eq!(
            e,
            "malformed Groups API answer: '[0].my_memberships' is not a list"
        );
        assert_eq!(
            message(parse_groups(br#"[{"id": "g"#)),
            "malformed Groups API answer: not valid JSON"
        );
    }

    #[test]
    fn groups_count_only_active_roles() {
        let doc = json!([
            {"id": "g1", "my_memberships": [{"role": "member", "status": "active"}]},
            {"id": "g2", "my_memberships": [{"role": "admin", "status": "pending"}]},
            {"id": "g3", "my_memberships": [{"role": "manager", "status": "active"}]},
            {"id": "g4", "my_memberships": []},
            {"id": "g5", "my_memberships": null},
            {"id": "g1", "my_memberships": [{"role": "admin", "status": "active"}]}
        ]);
        assert_eq!(parse_groups(&bytes(doc)).unwrap(), vec!["g1", "g3"]);
    }

    #[test]
    fn dependent_tokens_debug_hides_secrets() {
        let t = parse_dependent_tokens(
            &bytes(
                json!([{"scope": "s", "access_token": "SECRET", "expires_in": 10,
                           "refresh_token": null}]),
            ),
            100,
        )
        .unwrap();
        assert_eq!(t[0].expires_at, 110);
        assert_eq!(t[0].token_type, "bearer");
        assert!(!format!("{t:?}").contains("SECRET"));
    }

    /// Answers shaped as the real services send them (globus-sdk-python's testing data, with
    /// `include=identity_set`): every field we do not use is ignored, `null`s are absent.
    #[test]
    fn real_service_answers_parse() {
        let i = parse_introspection(&bytes(json!({
            "active": true, "token_type": "Bearer",
            "scope": "urn:globus:auth:scope:auth.globus.org:view_identity_set profile email openid",
            "client_id": "c1", "username": "kingfish@globus.org", "name": "Christone Ingram",
            "email": null, "exp": 1715289767, "iat": 1715116967, "nbf": 1715116967,
            "sub": "s1", "aud": ["auth.globus.org", "c1"], "iss": "https://auth.globus.org",
            "identity_set": ["s1", "s2"]
        })))
        .unwrap();
        assert_eq!(i.scopes.len(), 4);
        assert_eq!((i.email, i.exp, i.aud.len()), (None, Some(1715289767), 2));
        assert_eq!(i.identity_set.as_deref().map(<[String]>::len), Some(2));

        let t = parse_dependent_tokens(
            &bytes(json!([{
                "scope": "urn:globus:auth:scope:groups.api.globus.org:view_my_groups_and_memberships",
                "access_token": "groupsToken", "refresh_token": null, "token_type": "bearer",
                "expires_in": 120, "resource_server": "groups.api.globus.org"
            }])),
            1000,
        )
        .unwrap();
        assert_eq!(
            (t[0].expires_at, t[0].refresh_token.as_deref()),
            (1120, None)
        );

        let g = parse_groups(&bytes(json!([{
            "name": "Claptrap's Rough Riders", "parent_id": null,
            "id": "d3974728-6458-11e4-b72d-123139141556", "group_type": "regular",
            "enforce_session": false, "session_limit": 28800, "session_timeouts": {},
            "my_memberships": [{
                "group_id": "d3974728-6458-11e4-b72d-123139141556",
                "identity_id": "ae332d86-d274-11e5-b885-b31714a110e9",
                "username": "sirosen@globusid.org", "role": "member", "status": "active"
            }],
            "policies": {"group_visibility": "private", "group_members_visibility": "managers"}
        }])))
        .unwrap();
        assert_eq!(g, vec!["d3974728-6458-11e4-b72d-123139141556"]);
    }

    #[test]
    fn oauth_error_codes() {
        assert_eq!(
            oauth_error_code(br#"{"error": "invalid_grant", "x": 1}"#).as_deref(),
            Some("invalid_grant")
        );
        assert_eq!(oauth_error_code(br#"{"error": 5}"#), None);
        assert_eq!(oauth_error_code(b"<html>"), None);
    }
}
