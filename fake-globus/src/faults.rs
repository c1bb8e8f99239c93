//! Fault injection: spec parsing and the misbehaving responses.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use futures_util::stream;
use serde::Deserialize;
use serde_json::Value;

use crate::state::Endpoint;

/// Where a fault applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    One(Endpoint),
    All,
}

/// How a faulted request misbehaves (besides latency / status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Mode {
    Hang,
    Garbage,
    Reset,
    Trickle,
    Huge,
    WrongTypes,
    ActiveString,
    MissingExp,
    Close,
    Chunked,
}

/// A fault as posted to `POST /_control/faults`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    endpoint: String,
    latency_ms: Option<u64>,
    status: Option<u16>,
    body: Option<String>,
    retry_after: Option<RetryAfter>,
    mode: Option<Mode>,
    count: Option<u64>,
}

/// A `Retry-After` value: seconds, or any text sent verbatim (an HTTP-date, a negative number,
/// garbage: what a broken or hostile server may send).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum RetryAfter {
    Seconds(u64),
    Text(String),
}

/// A validated fault.
#[derive(Debug, Clone)]
pub(crate) struct Fault {
    pub target: Target,
    pub latency: Option<Duration>,
    pub status: Option<StatusCode>,
    pub body: Option<String>,
    pub retry_after: Option<RetryAfter>,
    pub mode: Option<Mode>,
    /// Remaining requests to affect; `None` = until cleared.
    pub count: Option<u64>,
}

impl Fault {
    /// Parses and validates a fault spec.
    pub fn parse(value: Value) -> Result<Fault, String> {
        let raw: RawFault =
            serde_json::from_value(value).map_err(|e| format!("invalid fault spec: {e}"))?;
        let target = match raw.endpoint.as_str() {
            "all" => Target::All,
            other => Target::One(Endpoint::parse(other).ok_or_else(|| {
                format!(
                    "unknown endpoint {other:?} (expected introspect, dependent_token, groups or all)"
                )
            })?),
        };
        let status = raw
            .status
            .map(|s| {
                StatusCode::from_u16(s)
                    .ok()
                    .filter(|_| (100..=599).contains(&s))
                    .ok_or_else(|| format!("invalid status {s}"))
            })
            .transpose()?;
        if raw.retry_after.is_some() && status.is_none() && raw.body.is_none() {
            return Err("retry_after needs status".into());
        }
        Ok(Fault {
            target,
            latency: raw.latency_ms.map(Duration::from_millis),
            status,
            body: raw.body,
            retry_after: raw.retry_after,
            mode: raw.mode,
            count: raw.count,
        })
    }

    /// Whether the fault replaces the answer before the normal one is computed.
    pub fn replaces_answer(&self) -> bool {
        matches!(
            self.mode,
            Some(Mode::Hang | Mode::Garbage | Mode::Reset | Mode::Huge | Mode::Close)
        ) || (self.mode.is_none() && (self.status.is_some() || self.body.is_some()))
    }
}

/// The canned `status`/`body` answer.
pub(crate) fn status_response(fault: &Fault) -> Response {
    let body = fault.body.clone().unwrap_or_default();
    let content_type = if serde_json::from_str::<Value>(&body).is_ok() {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = fault.status.unwrap_or(StatusCode::OK);
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    match &fault.retry_after {
        Some(RetryAfter::Seconds(secs)) => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(*secs));
        }
        Some(RetryAfter::Text(text)) => {
            if let Ok(v) = HeaderValue::from_str(text) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        None => {}
    }
    resp
}

/// 200 with a body that is not JSON.
pub(crate) fn garbage_response() -> Response {
    let mut resp = Response::new(Body::from("<html>oops"));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

fn io_error(msg: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, msg)
}

/// 200 announcing 4096 bytes, sending a fragment, then dropping the connection.
/// `guard` is held until the body ends.
pub(crate) fn reset_response<G: Send + 'static>(guard: G) -> Response {
    let body = stream::unfold((0u8, guard), |(step, guard)| async move {
        match step {
            0 => Some((
                Ok(Bytes::from_static(b"{\"active\": true, \"scope\": \"urn:")),
                (1, guard),
            )),
            1 => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((Err(io_error("fake-globus: reset mid-body")), (2, guard)))
            }
            _ => None,
        }
    });
    json_stream_response(Body::from_stream(body), Some(4096))
}

/// Sends `payload` one byte every 200 ms (Content-Length is correct).
pub(crate) fn trickle_response<G: Send + 'static>(
    status: StatusCode,
    payload: Vec<u8>,
    guard: G,
) -> Response {
    let len = payload.len() as u64;
    let body = stream::unfold((payload, 0usize, guard), |(payload, i, guard)| async move {
        if i >= payload.len() {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let chunk = Bytes::copy_from_slice(&payload[i..i + 1]);
        Some((Ok::<_, std::io::Error>(chunk), (payload, i + 1, guard)))
    });
    let mut resp = json_stream_response(Body::from_stream(body), Some(len));
    *resp.status_mut() = status;
    resp
}

/// Sends `payload` with `Transfer-Encoding: chunked` (no Content-Length), in
/// up to [`CHUNKS`] pieces with `pause` between them. `guard` is held until
/// the body ends.
pub(crate) fn chunked_response<G: Send + 'static>(
    status: StatusCode,
    payload: Vec<u8>,
    pause: Duration,
    guard: G,
) -> Response {
    let payload = Bytes::from(payload);
    let size = payload.len().div_ceil(CHUNKS).max(1);
    let body = stream::unfold(
        (payload, 0usize, guard),
        move |(payload, i, guard)| async move {
            if i >= payload.len() {
                return None;
            }
            if i > 0 && !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            let end = (i + size).min(payload.len());
            let chunk = payload.slice(i..end);
            Some((Ok::<_, std::io::Error>(chunk), (payload, end, guard)))
        },
    );
    let mut resp = json_stream_response(Body::from_stream(body), None);
    *resp.status_mut() = status;
    resp
}

/// How many pieces a chunked answer is sent in (fewer for tiny bodies).
pub(crate) const CHUNKS: usize = 3;

/// Total size of the `huge` body.
pub(crate) const HUGE_BYTES: usize = 100 * 1024 * 1024;
const HUGE_CHUNK: usize = 64 * 1024;
const HUGE_HEAD: &[u8] = b"{\"active\": true, \"padding\": \"";
const HUGE_TAIL: &[u8] = b"\"}";

/// A 100 MiB JSON-ish body (`{"active": true, "padding": "   ...   "}`),
/// streamed in 64 KiB chunks with chunked encoding (no Content-Length).
pub(crate) fn huge_response<G: Send + 'static>(guard: G) -> Response {
    let spaces = Bytes::from(vec![b' '; HUGE_CHUNK]);
    let body = stream::unfold((0usize, guard), move |(sent, guard)| {
        let spaces = spaces.clone();
        async move {
            if sent >= HUGE_BYTES {
                return None;
            }
            let chunk = if sent == 0 {
                let mut v = HUGE_HEAD.to_vec();
                v.resize(HUGE_CHUNK, b' ');
                Bytes::from(v)
            } else if sent + HUGE_CHUNK >= HUGE_BYTES {
                let mut v = vec![b' '; HUGE_BYTES - sent - HUGE_TAIL.len()];
                v.extend_from_slice(HUGE_TAIL);
                Bytes::from(v)
            } else {
                spaces
            };
            let next = sent + chunk.len();
            Some((Ok::<_, std::io::Error>(chunk), (next, guard)))
        }
    });
    json_stream_response(Body::from_stream(body), None)
}

/// A body whose first poll fails: used by `close` after the connection's
/// writes were disabled, so nothing at all reaches the client.
pub(crate) fn failing_response() -> Response {
    let body = stream::once(async { Err::<Bytes, _>(io_error("fake-globus: close")) });
    Response::new(Body::from_stream(body))
}

fn json_stream_response(body: Body, content_length: Option<u64>) -> Response {
    let mut resp = Response::new(body);
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(len) = content_length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    resp
}

/// Applies the answer-mutating modes (`wrong_types`, `active_string`,
/// `missing_exp`) to a normal JSON answer.
pub(crate) fn mutate(mode: Mode, endpoint: Endpoint, body: &mut Value) {
    match (mode, endpoint) {
        (Mode::WrongTypes, Endpoint::Introspect) => {
            if let Some(obj) = body.as_object_mut() {
                if let Some(exp) = obj.get("exp").cloned() {
                    obj.insert("exp".into(), Value::String(exp.to_string()));
                }
                obj.insert("aud".into(), Value::from(12345));
            }
        }
        (Mode::ActiveString, Endpoint::Introspect) => {
            if let Some(obj) = body.as_object_mut() {
                if let Some(Value::Bool(b)) = obj.get("active").cloned() {
                    obj.insert("active".into(), Value::String(b.to_string()));
                }
            }
        }
        (Mode::MissingExp, Endpoint::Introspect) => {
            if let Some(obj) = body.as_object_mut() {
                obj.remove("exp");
            }
        }
        (Mode::WrongTypes, Endpoint::DependentToken) => {
            for entry in body.as_array_mut().into_iter().flatten() {
                if let Some(obj) = entry.as_object_mut() {
                    if let Some(v) = obj.get("expires_in").cloned() {
                        obj.insert("expires_in".into(), Value::String(v.to_string()));
                    }
                    obj.insert("access_token".into(), Value::from(42));
                }
            }
        }
        (Mode::MissingExp, Endpoint::DependentToken) => {
            for entry in body.as_array_mut().into_iter().flatten() {
                if let Some(obj) = entry.as_object_mut() {
                    obj.remove("expires_in");
                }
            }
        }
        (Mode::WrongTypes, Endpoint::Groups) => {
            for group in body.as_array_mut().into_iter().flatten() {
                if let Some(obj) = group.as_object_mut() {
                    obj.insert("id".into(), Value::from(7));
                    obj.insert("my_memberships".into(), Value::from("member"));
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_faults() {
        let f =
            Fault::parse(json!({"endpoint": "groups", "status": 503, "retry_after": 2})).unwrap();
        assert_eq!(f.target, Target::One(Endpoint::Groups));
        assert!(f.replaces_answer());
        let f = Fault::parse(json!({"endpoint": "all", "mode": "wrong_types"})).unwrap();
        assert!(!f.replaces_answer());
        assert!(Fault::parse(json!({"endpoint": "nope"})).is_err());
        assert!(Fault::parse(json!({"endpoint": "all", "mode": "explode"})).is_err());
        assert!(Fault::parse(json!({"endpoint": "all", "status": 1000})).is_err());
        assert!(Fault::parse(json!({"latency_ms": 5})).is_err());
    }

    #[test]
    fn mutations() {
        let mut v = json!({"active": true, "exp": 5, "aud": ["a"]});
        mutate(Mode::WrongTypes, Endpoint::Introspect, &mut v);
        assert_eq!(v, json!({"active": true, "exp": "5", "aud": 12345}));
        mutate(Mode::ActiveString, Endpoint::Introspect, &mut v);
        assert_eq!(v["active"], "true");
        mutate(Mode::MissingExp, Endpoint::Introspect, &mut v);
        assert!(v.get("exp").is_none());
    }
}
