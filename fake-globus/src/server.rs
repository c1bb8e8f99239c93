//! The axum router: Globus endpoints plus the `/_control` API.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
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
use crate::state::{AppState, Endpoint};

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
    headers: HeaderMap,
) -> Response {
    let st = Arc::clone(&state);
    serve(state, conn, Endpoint::Groups, move || {
        groups_answer(&st, &headers)
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
        return json_response(status, &value);
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
        Some(mode) => {
            faults::mutate(mode, endpoint, &mut value);
            json_response(status, &value)
        }
        None => json_response(status, &value),
    }
}

fn introspect_answer(state: &AppState, headers: &HeaderMap, body: &[u8]) -> (StatusCode, Value) {
    if !client_authenticated(state, headers) {
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
    if !client_authenticated(state, headers) {
        return invalid_client();
    }
    let form = parse_form(body);
    if form.get("grant_type").map(String::as_str) != Some(DEPENDENT_GRANT) {
        return (
            StatusCode::BAD_REQUEST,
            json!({"error": "unsupported_grant_type"}),
        );
    }
    let token = form.get("token").map(String::as_str).unwrap_or("");
    let Some(spec) = state.token(token).filter(|s| s.is_active()) else {
        return (StatusCode::BAD_REQUEST, json!({"error": "invalid_grant"}));
    };
    let mut out = vec![json!({
        "scope": fixtures::GROUPS_SCOPE,
        "access_token": state.mint_grant(token, fixtures::GROUPS_RESOURCE_SERVER),
        "token_type": "bearer",
        "expires_in": fixtures::DEPENDENT_EXPIRES_IN,
        "resource_server": fixtures::GROUPS_RESOURCE_SERVER,
    })];
    for dep in &spec.dependent_tokens {
        out.push(json!({
            "scope": dep.scope,
            "access_token": state.mint_grant(token, &dep.resource_server),
            "token_type": "bearer",
            "expires_in": dep.expires_in,
            "resource_server": dep.resource_server,
        }));
    }
    (StatusCode::OK, Value::Array(out))
}

fn groups_answer(state: &AppState, headers: &HeaderMap) -> (StatusCode, Value) {
    let spec = bearer_token(headers)
        .and_then(|t| state.grant(&t))
        .filter(|g| g.resource_server == fixtures::GROUPS_RESOURCE_SERVER)
        .and_then(|g| state.token(&g.original));
    match spec {
        Some(spec) => (StatusCode::OK, spec.my_groups()),
        None => (
            StatusCode::UNAUTHORIZED,
            json!({"code": "AUTHENTICATION_ERROR"}),
        ),
    }
}

fn invalid_client() -> (StatusCode, Value) {
    (StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}))
}

fn client_authenticated(state: &AppState, headers: &HeaderMap) -> bool {
    basic_credentials(headers).is_some_and(|(id, secret)| state.client_ok(&id, &secret))
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
}

async fn ctl_add_client(State(state): State<AppRef>, body: Bytes) -> Response {
    control_reply(parse_json(&body).and_then(|v| {
        let c: ClientBody =
            serde_json::from_value(v).map_err(|e| format!("invalid client: {e}"))?;
        state.add_client(&c.client_id, &c.client_secret);
        Ok(Value::Null)
    }))
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
}
