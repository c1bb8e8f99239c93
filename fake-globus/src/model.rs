//! Token specs (what tests register) and the Globus JSON they render to.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::fixtures;

/// A token as registered through `POST /_control/tokens`; every field is optional.
///
/// Relative times (`exp_in`, `nbf_in`, `iat_in`) are resolved at each request,
/// so a token keeps the same "shape" however long the server runs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct TokenSpec {
    pub active: Option<bool>,
    pub scope: Option<String>,
    pub sub: Option<String>,
    pub username: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub aud: Option<Vec<String>>,
    pub client_id: Option<String>,
    pub exp: Option<i64>,
    pub exp_in: Option<i64>,
    pub nbf: Option<i64>,
    pub nbf_in: Option<i64>,
    pub iat: Option<i64>,
    pub iat_in: Option<i64>,
    pub identity_set: Option<Vec<String>>,
    pub omit_identity_set: bool,
    pub groups: Vec<GroupItem>,
    pub dependent_tokens: Vec<DependentSpec>,
    /// The user did not consent to this client's Groups dependency (a consent given before the
    /// dependency was added): grants for this token carry no Groups token, whatever the client.
    pub no_groups_consent: bool,
    /// `expires_in` of the groups dependent token (default
    /// [`fixtures::DEPENDENT_EXPIRES_IN`]); 0 = expired as soon as granted.
    pub groups_expires_in: Option<u64>,
    /// More members of the introspection answer (for an active token), sent as given: what a
    /// server may add (`session_info`, …), or a hostile one (the token echoed back).
    pub extra: serde_json::Map<String, Value>,
}

/// A group of a token: a bare id (active member) or a full membership.
#[derive(Debug, Clone)]
pub(crate) enum GroupItem {
    Id(String),
    Full(GroupSpec),
}

impl<'de> Deserialize<'de> for GroupItem {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::String(id) => Ok(GroupItem::Id(id)),
            v @ Value::Object(_) => serde_json::from_value(v)
                .map(GroupItem::Full)
                .map_err(|e| D::Error::custom(format!("group: {e}"))),
            other => Err(D::Error::custom(format!(
                "a group is a string id or an object, got {other}"
            ))),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupSpec {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub role: Option<String>,
    pub status: Option<String>,
    pub identity_id: Option<String>,
    pub username: Option<String>,
}

/// An extra dependent token handed out by the dependent-token grant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DependentSpec {
    pub scope: String,
    pub resource_server: String,
    #[serde(default = "default_expires_in")]
    pub expires_in: u64,
}

fn default_expires_in() -> u64 {
    fixtures::DEPENDENT_EXPIRES_IN
}

/// Parses a `{"<token>": <spec>, ...}` map; all-or-nothing.
pub(crate) fn parse_token_map(value: Value) -> Result<Vec<(String, TokenSpec)>, String> {
    let Value::Object(map) = value else {
        return Err("expected a JSON object {\"<token>\": <spec>, ...}".into());
    };
    map.into_iter()
        .map(|(token, spec)| {
            if token.is_empty() {
                return Err("token names must not be empty".to_string());
            }
            let spec = serde_json::from_value::<TokenSpec>(spec)
                .map_err(|e| format!("token {token:?}: {e}"))?;
            Ok((token, spec))
        })
        .collect()
}

/// Current unix time in seconds.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl TokenSpec {
    pub fn is_active(&self) -> bool {
        self.active.unwrap_or(true)
    }

    fn identities(&self) -> Vec<String> {
        self.identity_set
            .clone()
            .unwrap_or_else(|| vec![fixtures::DEFAULT_IDENTITY_ID.to_string()])
    }

    fn sub(&self) -> String {
        self.sub
            .clone()
            .or_else(|| self.identities().into_iter().next())
            .unwrap_or_else(|| fixtures::DEFAULT_IDENTITY_ID.to_string())
    }

    fn username(&self) -> String {
        self.username
            .clone()
            .unwrap_or_else(|| fixtures::DEFAULT_USERNAME.to_string())
    }

    /// The introspection answer for this token at time `now`.
    pub fn introspect(&self, now: i64, include_identity_set: bool) -> Value {
        if !self.is_active() {
            return json!({"active": false});
        }
        let rel = |abs: Option<i64>, rel: Option<i64>, default_rel: i64| {
            abs.unwrap_or_else(|| now.saturating_add(rel.unwrap_or(default_rel)))
        };
        let username = self.username();
        let mut out = json!({
            "active": true,
            "token_type": "Bearer",
            "scope": self.scope.as_deref().unwrap_or(fixtures::DEFAULT_SCOPE),
            "client_id": self.client_id.as_deref().unwrap_or(fixtures::CLIENT_ID),
            "username": username,
            "name": self.name.as_deref().unwrap_or(fixtures::DEFAULT_NAME),
            "email": self.email.clone().unwrap_or_else(|| username.clone()),
            "sub": self.sub(),
            "aud": self.aud.clone().unwrap_or_else(|| vec![fixtures::CLIENT_ID.to_string()]),
            "iss": fixtures::ISSUER,
            "exp": rel(self.exp, self.exp_in, 3600),
            "iat": rel(self.iat, self.iat_in, -10),
            "nbf": rel(self.nbf, self.nbf_in, -10),
        });
        if include_identity_set && !self.omit_identity_set {
            out["identity_set"] = json!(self.identities());
        }
        for (k, v) in &self.extra {
            out[k] = v.clone();
        }
        out
    }

    /// `expires_in` of the groups dependent token a grant hands out.
    pub fn groups_expires_in(&self) -> u64 {
        self.groups_expires_in
            .unwrap_or(fixtures::DEPENDENT_EXPIRES_IN)
    }

    /// The `my_groups` answer for this token (memberships merged per group),
    /// keeping only memberships whose status is in `statuses`; groups left
    /// without a membership are omitted.
    pub fn my_groups(&self, statuses: &[String]) -> Value {
        let sub = self.sub();
        let username = self.username();
        let mut order: Vec<String> = Vec::new();
        let mut groups: HashMap<String, Map<String, Value>> = HashMap::new();
        for item in &self.groups {
            let g = match item {
                GroupItem::Id(id) => GroupSpec {
                    id: id.clone(),
                    name: None,
                    description: None,
                    role: None,
                    status: None,
                    identity_id: None,
                    username: None,
                },
                GroupItem::Full(g) => g.clone(),
            };
            let status = g.status.as_deref().unwrap_or("active");
            if !statuses.iter().any(|s| s == status) {
                continue;
            }
            let membership = json!({
                "group_id": g.id,
                "identity_id": g.identity_id.clone().unwrap_or_else(|| sub.clone()),
                "username": g.username.clone().unwrap_or_else(|| username.clone()),
                "role": g.role.as_deref().unwrap_or("member"),
                "status": status,
            });
            let entry = groups.entry(g.id.clone()).or_insert_with(|| {
                order.push(g.id.clone());
                let name = g.name.clone().unwrap_or_else(|| format!("Group {}", g.id));
                let obj = json!({
                    "id": g.id,
                    "name": name,
                    "description": g.description.as_deref().unwrap_or(""),
                    "group_type": "regular",
                    "parent_id": null,
                    "my_memberships": [],
                });
                match obj {
                    Value::Object(m) => m,
                    _ => Map::new(),
                }
            });
            if let Some(Value::Array(list)) = entry.get_mut("my_memberships") {
                list.push(membership);
            }
        }
        Value::Array(
            order
                .iter()
                .filter_map(|id| groups.remove(id))
                .map(Value::Object)
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_parse() {
        let specs = parse_token_map(fixtures::tokens()).unwrap();
        assert_eq!(specs.len(), fixtures::ALL_TOKENS.len());
    }

    #[test]
    fn defaults_and_relative_times() {
        let spec: TokenSpec = serde_json::from_value(json!({"exp_in": -5})).unwrap();
        let v = spec.introspect(1000, true);
        assert_eq!(v["exp"], 995);
        assert_eq!(v["nbf"], 990);
        assert_eq!(v["sub"], fixtures::DEFAULT_IDENTITY_ID);
        assert_eq!(v["aud"], json!(["test-client"]));
        assert_eq!(v["identity_set"], json!([fixtures::DEFAULT_IDENTITY_ID]));
        assert!(spec.introspect(1000, false).get("identity_set").is_none());
    }

    #[test]
    fn groups_merge_and_default() {
        let spec: TokenSpec = serde_json::from_value(json!({
            "sub": "s",
            "groups": ["g1", {"id": "g1", "identity_id": "x", "role": "admin"}, {"id": "g2"}]
        }))
        .unwrap();
        let active = vec!["active".to_string()];
        let v = spec.my_groups(&active);
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(v[0]["my_memberships"].as_array().unwrap().len(), 2);
        assert_eq!(v[0]["my_memberships"][0]["identity_id"], "s");
        assert_eq!(v[0]["my_memberships"][1]["role"], "admin");
    }

    #[test]
    fn groups_filtered_by_status() {
        let spec: TokenSpec = serde_json::from_value(json!({
            "groups": [
                {"id": "g1", "status": "pending"},
                {"id": "g2"},
                {"id": "g2", "identity_id": "x", "status": "invited"},
            ]
        }))
        .unwrap();
        let ids = |statuses: &[&str]| {
            let statuses: Vec<String> = statuses.iter().map(|s| s.to_string()).collect();
            let v = spec.my_groups(&statuses);
            v.as_array()
                .unwrap()
                .iter()
                .map(|g| {
                    let n = g["my_memberships"].as_array().unwrap().len();
                    format!("{}:{n}", g["id"].as_str().unwrap())
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&["active"]), ["g2:1"]);
        assert_eq!(ids(&["pending"]), ["g1:1"]);
        assert_eq!(ids(&["active", "pending", "invited"]), ["g1:1", "g2:2"]);
        assert!(ids(&["removed"]).is_empty());
    }

    #[test]
    fn bad_specs_rejected() {
        assert!(parse_token_map(json!([1])).is_err());
        assert!(parse_token_map(json!({"t": {"bogus": 1}})).is_err());
        assert!(parse_token_map(json!({"t": {"exp": "soon"}})).is_err());
        let err = parse_token_map(json!({"t": {"groups": [{"idd": "g"}]}})).unwrap_err();
        assert!(err.contains("idd"), "{err}");
        assert!(parse_token_map(json!({"t": {"groups": [5]}})).is_err());
    }
}
