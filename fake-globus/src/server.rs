//! The axum router: Globus endpoints plus the `/_control` API.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::conn::Conn;
use crate::faults::{self, Fault, Mode};
use crate::fixtures;
use crate::model::now;
use crate::state::{AppState, Client, Endpoint};

/// The OAuth2 grant type of the dependent-token grant.
pub(crate) const DEPENDENT_GRANT: &str = "urn:globus:auth:grant_type:dependent_token";

type AppRef = Arc<AppState>;

pub(crate) fn router(state: AppRef) -> Router {
    Router::new()
        .route("/v2/oauth2/token/introspect", post(introspect))
        .route("/v2/oauth2/token", post(dependent_token))
        .route("/v2/groups/my_groups", get(my_groups))
        .route(
            "/_control/health",
            get(|| async { Json(json!({"ok": true})) }),
        )
        .route("/_control/tokens", post(ctl_add_tokens))
        .route("/_control/tokens/{token}", delete(ctl_remove_token))
        .route("/_control/clients", post(ctl_add_client))
        .route("/_control/counters", get(ctl_counters))
        .route(
            "/_control/faults",
            post(ctl_set_fault).delete(ctl_clear_faults),
        )
        .route("/_control/reset", post(ctl_reset))
        .route("/_control/grants", get(ctl_grants))
        .route(
            "/_control/dependent_tokens",
            delete(ctl_revoke_dependent_tokens),
        )
        .fallback(|| async { json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found"})) })
        .with_state(state)
}

// ---------------------------------------------------------------- Globus API

async fn introspect(
    State(state): State<AppRef>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let st = Arc::clone(&state);
    serve(state, conn, Endpoint::Introspect, move || {
        introspect_answer(&st, &headers, &body)
    })
    .await
}

async fn dependent_token(
    State(state): State<AppRef>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let st = Arc::clone(&state);
    serve(state, conn, Endpoint::DependentToken, move || {
        dependent_answer(&st, &headers, &body)
    })
    .await
}

async fn my_groups(
    State(state): State<AppRef>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let st = Arc::clone(&state);
    serve(state, conn, Endpoint::Groups, move || {
        groups_answer(&st, &headers, query.as_deref().unwrap_or(""))
    })
    .await
}

/// Counts the request, applies any fault, otherwise answers with `answer()`.
async fn serve(
    state: AppRef,
    conn: Conn,
    endpoint: Endpoint,
    answer: impl FnOnce() -> (StatusCode, Value),
) -> Response {
    let guard = state.begin(endpoint);
    let Some(fault) = state.take_fault(endpoint) else {
        let (status, value) = answer();
        return normal_response(endpoint, status, &value);
    };
    if let Some(latency) = fault.latency {
        tokio::time::sleep(latency).await;
    }
    if fault.replaces_answer() {
        return match fault.mode {
            Some(Mode::Hang) => {
                let _guard = guard;
                std::future::pending().await
            }
            Some(Mode::Close) => {
                conn.kill();
                faults::failing_response()
            }
            Some(Mode::Garbage) => faults::garbage_response(),
            Some(Mode::Reset) => faults::reset_response(guard),
            Some(Mode::Huge) => faults::huge_response(guard),
            _ => faults::status_response(&fault),
        };
    }
    let (status, mut value) = answer();
    match fault.mode {
        Some(Mode::Trickle) => {
            let payload = serde_json::to_vec(&value).unwrap_or_default();
            faults::trickle_response(status, payload, guard)
        }
        Some(Mode::Chunked) => {
            let payload = serde_json::to_vec(&value).unwrap_or_default();
            faults::chunked_response(status, payload, CHUNK_PAUSE, guard)
        }
        Some(mode) => {
            faults::mutate(mode, endpoint, &mut value);
            normal_response(endpoint, status, &value)
        }
        None => normal_response(endpoint, status, &value),
    }
}

/// Pause between the pieces of a `chunked` fault answer.
const CHUNK_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// A normal (not faulted) answer. A successful `my_groups` list is sent
/// chunked, without Content-Length, like a streamed list; everything else
/// has a Content-Length.
fn normal_response(endpoint: Endpoint, status: StatusCode, value: &Value) -> Response {
    if endpoint == Endpoint::Groups && status == StatusCode::OK {
        let payload = serde_json::to_vec(value).unwrap_or_default();
        return faults::chunked_response(status, payload, std::time::Duration::ZERO, ());
    }
    json_response(status, value)
}

fn introspect_answer(state: &AppState, headers: &HeaderMap, body: &[u8]) -> (StatusCode, Value) {
    if authenticated_client(state, headers).is_none() {
        return invalid_client();
    }
    let form = parse_form(body);
    let Some(token) = form.get("token").filter(|t| !t.is_empty()) else {
        return (
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": "missing token"}),
        );
    };
    let include_identity_set = form
        .get("include")
        .is_some_and(|inc| inc.split([',', ' ']).any(|p| p == "identity_set"));
    match state.token(token) {
        Some(spec) => (StatusCode::OK, spec.introspect(now(), include_identity_set)),
        None => (StatusCode::OK, json!({"active": false})),
    }
}

fn dependent_answer(state: &AppState, headers: &HeaderMap, body: &[u8]) -> (StatusCode, Value) {
    let Some(client) = authenticated_client(state, headers) else {
        return invalid_client();
    };
    let form = parse_form(body);
    if form.get("grant_type").map(String::as_str) != Some(DEPENDENT_GRANT) {
        return (
            StatusCode::BAD_REQUEST,
            json!({"error": "unsupported_grant_type"}),
        );
    }
    let token = form.get("token").map(String::as_str).unwrap_or("");
    if !token.is_empty() {
        state.count_grant(token);
    }
    let Some(spec) = state.token(token).filter(|s| s.is_active()) else {
        return invalid_grant(state);
    };
    let mut out = Vec::with_capacity(1 + spec.dependent_tokens.len());
    if client.groups_dependency && !spec.no_groups_consent {
        let expires_in = spec.groups_expires_in();
        out.push(json!({
            "scope": fixtures::GROUPS_SCOPE,
            "access_token": state.mint_grant(token, &spec, fixtures::GROUPS_RESOURCE_SERVER, expires_in),
            "token_type": "bearer",
            "expires_in": expires_in,
            "resource_server": fixtures::GROUPS_RESOURCE_SERVER,
        }));
    }
    for dep in &spec.dependent_tokens {
        out.push(json!({
            "scope": dep.scope,
            "access_token": state.mint_grant(token, &spec, &dep.resource_server, dep.expires_in),
            "token_type": "bearer",
            "expires_in": dep.expires_in,
            "resource_server": dep.resource_server,
        }));
    }
    (StatusCode::OK, Value::Array(out))
}

/// Globus Auth's error document for a grant on an unknown, revoked or
/// inactive token: the OAuth2 `error` / `error_description` pair plus the
/// Globus `errors` array.
fn invalid_grant(state: &AppState) -> (StatusCode, Value) {
    (
        StatusCode::BAD_REQUEST,
        json!({
            "error": "invalid_grant",
            "error_description": "Invalid Grant",
            "errors": [{
                "status": "400",
                "id": state.random_id(),
                "code": "INVALID_GRANT",
                "title": "Invalid Grant",
                "detail": "The token is invalid, expired or revoked",
            }],
        }),
    )
}

/// The membership statuses asked for by `my_groups`' `statuses` parameter
/// (comma-separated and/or repeated); `active` when absent or empty.
fn requested_statuses(query: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(k.as_bytes()) != "statuses" {
            continue;
        }
        for status in percent_decode(v.as_bytes()).split(',') {
            let status = status.trim();
            if !status.is_empty() && !out.iter().any(|s| s == status) {
                out.push(status.to_string());
            }
        }
    }
    if out.is_empty() {
        out.push("active".to_string());
    }
    out
}

fn groups_answer(state: &AppState, headers: &HeaderMap, query: &str) -> (StatusCode, Value) {
    let grant = bearer_token(headers)
        .and_then(|t| state.live_grant(&t))
        .filter(|g| g.resource_server == fixtures::GROUPS_RESOURCE_SERVER);
    match grant {
        Some(grant) => {
            // The original's current spec if it still exists, else the
            // snapshot taken at grant time.
            let spec = state.token(&grant.original).unwrap_or(grant.snapshot);
            (StatusCode::OK, spec.my_groups(&requested_statuses(query)))
        }
        None => (
            StatusCode::UNAUTHORIZED,
            json!({"code": "AUTHENTICATION_ERROR"}),
        ),
    }
}

fn invalid_client() -> (StatusCode, Value) {
    (StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}))
}

fn authenticated_client(state: &AppState, headers: &HeaderMap) -> Option<Client> {
    basic_credentials(headers).and_then(|(id, secret)| state.client(&id, &secret))
}

fn auth_param<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let encoded = auth_param(headers, "basic")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    auth_param(headers, "bearer")
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// Parses an `application/x-www-form-urlencoded` body (first value wins).
fn parse_form(body: &[u8]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        out.entry(percent_decode(k))
            .or_insert_with(|| percent_decode(v));
    }
    out
}

fn percent_decode(input: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < input.len() => match (hex(input[i + 1]), hex(input[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    (status, Json(value)).into_response()
}

// ---------------------------------------------------------------- control API

/// Turns a control-handler result into 200 `{"ok": true, ...extra}` or
/// 400 `{"error": "bad_request", "message": ...}`.
fn control_reply(result: Result<Value, String>) -> Response {
    match result {
        Ok(extra) => {
            let mut body = json!({"ok": true});
            if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
                body.extend(extra);
            }
            json_response(StatusCode::OK, &body)
        }
        Err(message) => json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "bad_request", "message": message}),
        ),
    }
}

fn parse_json(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))
}

async fn ctl_add_tokens(State(state): State<AppRef>, body: Bytes) -> Response {
    control_reply(
        parse_json(&body)
            .and_then(|v| state.add_tokens(v))
            .map(|n| json!({"added": n})),
    )
}

async fn ctl_remove_token(State(state): State<AppRef>, Path(token): Path<String>) -> Response {
    control_reply(Ok(json!({"removed": state.remove_token(&token)})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientBody {
    client_id: String,
    client_secret: String,
    #[serde(default = "yes")]
    groups_dependency: bool,
}

fn yes() -> bool {
    true
}

async fn ctl_add_client(State(state): State<AppRef>, body: Bytes) -> Response {
    control_reply(parse_json(&body).and_then(|v| {
        let c: ClientBody =
            serde_json::from_value(v).map_err(|e| format!("invalid client: {e}"))?;
        state.add_client(&c.client_id, &c.client_secret, c.groups_dependency);
        Ok(Value::Null)
    }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    /// Revoke the dependent tokens granted from this original token.
    token: Option<String>,
    /// Revoke this one dependent token.
    access_token: Option<String>,
}

async fn ctl_revoke_dependent_tokens(State(state): State<AppRef>, body: Bytes) -> Response {
    let parsed = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(RevokeBody::default())
    } else {
        parse_json(&body).and_then(|v| {
            serde_json::from_value::<RevokeBody>(v).map_err(|e| format!("invalid revocation: {e}"))
        })
    };
    control_reply(parsed.and_then(|b| match (b.token, b.access_token) {
        (Some(_), Some(_)) => Err("give token or access_token, not both".into()),
        (None, Some(access_token)) => {
            Ok(json!({"revoked": u64::from(state.revoke_grant(&access_token))}))
        }
        (token, None) => Ok(json!({"revoked": state.revoke_grants(token.as_deref())})),
    }))
}

async fn ctl_grants(State(state): State<AppRef>) -> Response {
    json_response(StatusCode::OK, &state.grant_counts_json())
}

async fn ctl_counters(State(state): State<AppRef>) -> Response {
    json_response(StatusCode::OK, &state.counters_json())
}

async fn ctl_set_fault(State(state): State<AppRef>, body: Bytes) -> Response {
    control_reply(parse_json(&body).and_then(|v| {
        state.set_fault(Fault::parse(v)?);
        Ok(Value::Null)
    }))
}

async fn ctl_clear_faults(State(state): State<AppRef>) -> Response {
    state.clear_faults();
    control_reply(Ok(Value::Null))
}

async fn ctl_reset(State(state): State<AppRef>) -> Response {
    state.reset();
    control_reply(Ok(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_parsing() {
        let f = parse_form(b"token=a%2Bb+c&include=identity_set&x&bad=%zz%4");
        assert_eq!(f["token"], "a+b c");
        assert_eq!(f["include"], "identity_set");
        assert_eq!(f["x"], "");
        assert_eq!(f["bad"], "%zz%4");
        assert!(parse_form(b"").is_empty());
    }

    #[test]
    fn basic_auth_parsing() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            "Basic dGVzdC1jbGllbnQ6dGVzdC1zZWNyZXQ=".parse().unwrap(),
        );
        assert_eq!(
            basic_credentials(&h),
            Some(("test-client".into(), "test-secret".into()))
        );
        h.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert_eq!(basic_credentials(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&h).as_deref(), Some("abc"));
    }

    #[test]
    fn statuses_parsing() {
        assert_eq!(requested_statuses(""), ["active"]);
        assert_eq!(requested_statuses("statuses="), ["active"]);
        assert_eq!(
            requested_statuses("statuses=active%2Cpending&x=1&statuses=invited,active"),
            ["active", "pending", "invited"]
        );
        assert_eq!(requested_statuses("statuses=pending"), ["pending"]);
    }
}
