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
