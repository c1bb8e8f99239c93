//! What Globus Auth answers, as the rest of the crate uses it: a token's introspection and the
//! dependent tokens issued to this service.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What the authorization server said about a token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Introspection {
    pub active: bool,
    pub scopes: Vec<String>,
    pub sub: Option<String>,
    pub username: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub aud: Vec<String>,
    pub client_id: Option<String>,
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
    pub identity_set: Option<Arc<[String]>>,
    /// The members of the answer this crate does not read (`iss`, `token_type`, …), as a JSON
    /// object's text; `None` when there were none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Box<str>>,
}

impl Introspection {
    /// The introspection answer in the server's shape: every member the server sent (`scope`
    /// as one space-separated string, `identity_set` as given, absent values left out).
    pub fn server_json(&self) -> String {
        use serde_json::{Map, Value};
        let i = self.clone();
        let mut doc = Map::new();
        doc.insert("active".into(), i.active.into());
        if i.active {
            doc.insert("scope".into(), i.scopes.join(" ").into());
            for (key, value) in [
                ("client_id", i.client_id),
                ("sub", i.sub),
                ("username", i.username),
                ("name", i.name),
                ("email", i.email),
            ] {
                if let Some(v) = value {
                    doc.insert(key.into(), v.into());
                }
            }
            doc.insert("aud".into(), i.aud.into());
            for (key, value) in [("exp", i.exp), ("nbf", i.nbf), ("iat", i.iat)] {
                if let Some(v) = value {
                    doc.insert(key.into(), v.into());
                }
            }
            if let Some(ids) = i.identity_set {
                doc.insert("identity_set".into(), ids.to_vec().into());
            }
        }
        if let Some(Ok(Value::Object(extra))) = self.extra.as_deref().map(serde_json::from_str) {
            for (k, v) in extra {
                doc.entry(k).or_insert(v);
            }
        }
        Value::Object(doc).to_string()
    }
}

/// A token issued to this service to act for the caller at another resource server.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct DependentToken {
    pub scope: String,
    pub access_token: String,
    pub resource_server: String,
    pub token_type: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for DependentToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DependentToken")
            .field("scope", &self.scope)
            .field("resource_server", &self.resource_server)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}
