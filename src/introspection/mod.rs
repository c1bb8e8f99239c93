//! The HTTP client for Globus Auth (introspection, dependent-token grant) and the Groups API.
//!
//! Every call is bounded: connect and request timeouts, a cap on the response size, a deadline
//! for the whole call (the wait for a request slot, every try and every pause between tries),
//! and a small number of retries (with backoff, honouring `Retry-After` as far as the deadline
//! allows) on answers that say "try again" (429, 500, 502, 503, 504) or on connection failures.
//! Responses are parsed strictly: a document that is not exactly what the protocol promises is
//! an error, never an "active" token. Neither the token nor the client secret ever appears in an
//! error message, and the `Authorization` headers are marked sensitive. The answers' wire types
//! and parsers are in `wire.rs`.

mod proxy;
mod wire;

use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use reqwest::header::HeaderValue;

use crate::clock::now_unix;
use crate::config::Config;
use crate::model::{DependentToken, Introspection};
use crate::stats::{stats, Counter};
use crate::status::{tc_status, Cause, Error};

pub use wire::{parse_dependent_tokens, parse_groups, parse_introspection};

/// The Groups API scope whose dependent token reads the caller's memberships.
pub const GROUPS_SCOPE: &str =
    "urn:globus:auth:scope:groups.api.globus.org:view_my_groups_and_memberships";
pub const GROUPS_RESOURCE_SERVER: &str = "groups.api.globus.org";
const DEPENDENT_GRANT: &str = "urn:globus:auth:grant_type:dependent_token";
/// The most of an error answer's body read to learn its OAuth2 `error` code.
const MAX_ERROR_BODY: usize = 16 * 1024;
/// A Groups answer may be this many times `max_response_bytes`: `my_groups` lists every group of
/// the caller with its memberships, and a user may be in thousands.
const GROUPS_RESPONSE_FACTOR: usize = 64;
/// The longest pause a `Retry-After` may ask for; longer ones are cut to this (the call's
/// deadline usually ends the call first).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How a call retries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Up to `max_retries` times, on an answer that says "try again" (429, 500, 502, 503, 504)
    /// or a connection that failed before an answer.
    Answers,
    /// Once, on a 5xx, a timeout or a connection that failed (as globus-action-provider-tools
    /// does for the dependent-token grant).
    Once,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Introspect,
    DependentToken,
    Groups,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Introspect => "introspection",
            Endpoint::DependentToken => "dependent-token grant",
            Endpoint::Groups => "Groups API",
        }
    }
    fn requests(self) -> &'static Counter {
        match self {
            Endpoint::Introspect => &stats().requests_introspect,
            Endpoint::DependentToken => &stats().requests_dependent_token,
            Endpoint::Groups => &stats().requests_groups,
        }
    }
    /// A parsed answer; a malformed one counts as an error of the endpoint and is logged.
    fn parsed<T>(self, result: Result<T, Error>) -> Result<T, Error> {
        result.inspect_err(|e| {
            self.errors().inc();
            crate::log::log_warn!("{}", e);
        })
    }

    fn errors(self) -> &'static Counter {
        match self {
            Endpoint::Introspect => &stats().errors_introspect,
            Endpoint::DependentToken => &stats().errors_dependent_token,
            Endpoint::Groups => &stats().errors_groups,
        }
    }
}

/// Talks to one authorization server and one Groups API with one set of client credentials.
pub struct AuthClient {
    http: reqwest::Client,
    introspect_url: String,
    token_url: String,
    groups_url: String,
    /// `Basic <client credentials>`, marked sensitive.
    basic: HeaderValue,
    max_response_bytes: usize,
    /// The cap of a Groups answer (see [`GROUPS_RESPONSE_FACTOR`]).
    max_groups_response_bytes: usize,
    max_retries: u32,
    /// Slots for requests in flight; a caller waits at most `slot_wait` for one (and never
    /// past its deadline).
    slots: tokio::sync::Semaphore,
    slot_wait: Duration,
}

/// An `Authorization` header value that never shows up in a debug print or an HTTP/2 index.
fn sensitive(value: String) -> Result<HeaderValue, Error> {
    let mut v = HeaderValue::try_from(value)
        .map_err(|_| Error::invalid_argument("a credential holds characters a header cannot"))?;
    v.set_sensitive(true);
    Ok(v)
}

impl AuthClient {
    pub fn new(config: &Config) -> Result<AuthClient, Error> {
        let mut builder = reqwest::Client::builder();
        for cert in &config.ca_certs {
            builder = builder.add_root_certificate(cert.clone());
        }
        let http = builder
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .user_agent(concat!("tokenchecker/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            // Loopback never through a proxy; other hosts as the environment says.
            .no_proxy()
            .proxy(proxy::rule())
            .build()
            .map_err(|e| Error::invalid_config(format!("cannot build the HTTP client: {e}")))?;
        let creds = format!("{}:{}", config.client_id, config.client_secret);
        Ok(AuthClient {
            http,
            introspect_url: format!("{}/v2/oauth2/token/introspect", config.auth_url),
            token_url: format!("{}/v2/oauth2/token", config.auth_url),
            groups_url: format!("{}/v2/groups/my_groups", config.groups_url),
            basic: sensitive(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(creds)
            ))
            .map_err(|_| {
                Error::invalid_config("client_id or client_secret holds a control character")
            })?,
            max_response_bytes: config.max_response_bytes,
            max_groups_response_bytes: config
                .max_response_bytes
                .saturating_mul(GROUPS_RESPONSE_FACTOR),
            max_retries: config.max_retries,
            slots: tokio::sync::Semaphore::new(config.max_concurrent_requests),
            slot_wait: config.request_timeout,
        })
    }

    /// A form `POST` to Globus Auth with the client credentials.
    fn post_form(&self, url: &str, form: &str) -> reqwest::RequestBuilder {
        self.http
            .post(url)
            .header("Authorization", self.basic.clone())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .body(form.to_owned())
    }

    /// `POST /v2/oauth2/token/introspect` with `include=identity_set`.
    pub async fn introspect(&self, token: &str, deadline: Instant) -> Result<Introspection, Error> {
        let form = form(&[("token", token), ("include", "identity_set")]);
        let answer = self
            .send(Endpoint::Introspect, Retry::Answers, deadline, || {
                self.post_form(&self.introspect_url, &form)
            })
            .await?;
        Endpoint::Introspect.parsed(parse_introspection(&answer))
    }

    /// The dependent-token grant: tokens for the services this one may call for the caller.
    /// `invalid_grant` (the caller's token was revoked or expired since it was introspected) is
    /// `TC_INACTIVE_TOKEN` with [`Cause::TokenRejected`].
    pub async fn dependent_tokens(
        &self,
        token: &str,
        deadline: Instant,
    ) -> Result<Vec<DependentToken>, Error> {
        let form = form(&[("grant_type", DEPENDENT_GRANT), ("token", token)]);
        // Retried once only: a second grant after an answer that was lost may issue a second
        // set of tokens, which is harmless but not free.
        let answer = self
            .send(Endpoint::DependentToken, Retry::Once, deadline, || {
                self.post_form(&self.token_url, &form)
            })
            .await?;
        Endpoint::DependentToken.parsed(parse_dependent_tokens(&answer, now_unix()))
    }

    /// `GET /v2/groups/my_groups`: ids of the groups with an active member/manager/admin
    /// membership. A 401 (the dependent token was revoked or expired) is [`Cause::TokenRejected`].
    pub async fn my_groups(
        &self,
        groups_token: &str,
        deadline: Instant,
    ) -> Result<Vec<String>, Error> {
        let bearer = sensitive(format!("Bearer {groups_token}")).map_err(|_| {
            Error::unavailable("the Groups API token from the dependent-token grant is malformed")
        })?;
        let answer = self
            .send(Endpoint::Groups, Retry::Answers, deadline, || {
                self.http
                    .get(&self.groups_url)
                    .header("Authorization", bearer.clone())
                    .header("Accept", "application/json")
            })
            .await?;
        Endpoint::Groups.parsed(parse_groups(&answer))
    }

    async fn send(
        &self,
        endpoint: Endpoint,
        retry: Retry,
        deadline: Instant,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, Error> {
        let slot_wait = self
            .slot_wait
            .min(deadline.saturating_duration_since(Instant::now()));
        let _slot = match tokio::time::timeout(slot_wait, self.slots.acquire()).await {
            Ok(Ok(permit)) => permit,
            _ => {
                stats().requests_shed.inc();
                crate::log::log_warn!(
                    "{}: too many requests in flight (max_concurrent_requests); refused one",
                    endpoint.name()
                );
                return Err(Error::unavailable(format!(
                    "too many requests to the {} are in flight (max_concurrent_requests)",
                    endpoint.name()
                )));
            }
        };
        let mut attempt = 0u32;
        loop {
            endpoint.requests().inc();
            let started = std::time::Instant::now();
            let outcome = self.send_once(endpoint, build()).await;
            let took = started.elapsed();
            stats().request_latency.observe(took);
            crate::log::log_debug!(
                "{} request {} in {:.1} ms",
                endpoint.name(),
                if outcome.is_ok() {
                    "answered"
                } else {
                    "failed"
                },
                took.as_secs_f64() * 1e3
            );
            let backoff = Duration::from_millis(50 << attempt.min(5));
            let retry_after = match (&outcome, retry) {
                (Ok(_), _) => None,
                (Err(Failure::Retryable { after, .. }), Retry::Answers) => {
                    Some(after.unwrap_or(backoff))
                }
                (
                    Err(Failure::Retryable {
                        after,
                        status: None | Some(500..=599),
                        ..
                    }),
                    Retry::Once,
                ) => Some(after.unwrap_or(backoff)),
                (Err(Failure::Transport { timed_out: true }), Retry::Once) => Some(backoff),
                (Err(_), _) => None,
            };
            let tries = match retry {
                Retry::Answers => self.max_retries,
                Retry::Once => 1,
            };
            // `Retry-After` is honoured in full, as long as the deadline leaves time for the
            // pause and something of a try after it; otherwise the call ends now.
            let fits = |delay: Duration| {
                Instant::now()
                    .checked_add(delay.saturating_add(MIN_TRY))
                    .is_some_and(|end| end < deadline)
            };
            match (outcome, retry_after) {
                (Ok(v), _) => return Ok(v),
                (Err(f), Some(delay)) if attempt < tries && fits(delay) => {
                    drop(f);
                    attempt += 1;
                    stats().retries.inc();
                    crate::log::log_info!(
                        "{}: retrying in {} ms (attempt {})",
                        endpoint.name(),
                        delay.as_millis(),
                        attempt + 1
                    );
                    tokio::time::sleep(delay).await;
                }
                (Err(f), _) => {
                    endpoint.errors().inc();
                    let e = f.into_error(endpoint);
                    crate::log::log_warn!("{}", e);
                    return Err(e);
                }
            }
        }
    }

    async fn send_once(
        &self,
        endpoint: Endpoint,
        req: reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, Failure> {
        let mut resp = req.send().await.map_err(|e| Failure::from_reqwest(&e))?;
        let status = resp.status().as_u16();
        let cap = match endpoint {
            Endpoint::Groups => self.max_groups_response_bytes,
            _ => self.max_response_bytes,
        };
        if let Some(len) = resp.content_length() {
            if len > cap as u64 {
                return Err(Failure::Fatal(Error::unavailable(format!(
                    "the {} answer is too large ({len} bytes, limit {cap})",
                    endpoint.name(),
                ))));
            }
        }
        match status {
            200 => {}
            401 if endpoint == Endpoint::Groups => {
                return Err(Failure::Fatal(
                    Error::unavailable(
                        "the Groups API refused the dependent token (HTTP 401: revoked or expired)",
                    )
                    .with_cause(Cause::TokenRejected),
                ))
            }
            400 if endpoint == Endpoint::DependentToken => {
                let code = error_code(resp).await;
                return Err(Failure::Fatal(
                    if code.as_deref() == Some("invalid_grant") {
                        Error::new(
                            tc_status::TC_INACTIVE_TOKEN,
                            "the authorization server refused the dependent-token grant for this \
                         token (invalid_grant): it was revoked or has expired",
                        )
                        .with_cause(Cause::TokenRejected)
                    } else {
                        Error::unavailable(format!(
                            "the dependent-token grant answered HTTP 400 ({})",
                            code.as_deref().unwrap_or("no error code")
                        ))
                    },
                ));
            }
            401 => {
                return Err(Failure::Fatal(Error::new(
                    tc_status::TC_CREDENTIALS_REJECTED,
                    format!(
                        "the authorization server rejected this service's client credentials \
                         (HTTP 401 from the {}); check client_id and client_secret",
                        endpoint.name()
                    ),
                )))
            }
            429 | 500 | 502 | 503 | 504 => {
                let after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after(v, SystemTime::now()));
                return Err(Failure::Retryable {
                    after,
                    status: Some(status),
                });
            }
            other => {
                let e =
                    Error::unavailable(format!("the {} answered HTTP {other}", endpoint.name()));
                return Err(Failure::Fatal(if other >= 500 {
                    e.with_cause(Cause::Upstream)
                } else {
                    e
                }));
            }
        }
        let mut body =
            Vec::with_capacity(resp.content_length().unwrap_or(1024).min(65536) as usize);
        while let Some(chunk) = resp.chunk().await.map_err(|e| Failure::from_reqwest(&e))? {
            if body.len() + chunk.len() > cap {
                return Err(Failure::Fatal(Error::unavailable(format!(
                    "the {} answer exceeds the response size limit ({cap} bytes)",
                    endpoint.name(),
                ))));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

enum Failure {
    Retryable {
        after: Option<Duration>,
        status: Option<u16>,
    },
    /// No usable answer, and asking again is not known to be safe.
    Transport {
        timed_out: bool,
    },
    Fatal(Error),
}

impl Failure {
    fn from_reqwest(e: &reqwest::Error) -> Failure {
        // Nothing usable arrived: the connection failed, or broke before or during the answer
        // (a pooled keep-alive connection the server had just closed, say). Asking again is
        // safe for every endpoint, the grant included: no tokens reached us. A timeout is not
        // retried, so the configured timeouts bound the call.
        let broke =
            !e.is_timeout() && (e.is_connect() || e.is_request() || e.is_body() || e.is_decode());
        if broke {
            return Failure::Retryable {
                after: None,
                status: None,
            };
        }
        Failure::Transport {
            timed_out: e.is_timeout(),
        }
    }

    fn into_error(self, endpoint: Endpoint) -> Error {
        match self {
            Failure::Fatal(e) => e,
            Failure::Transport { timed_out } => Error::upstream_failure(format!(
                "the request to the {} {}",
                endpoint.name(),
                if timed_out { "timed out" } else { "failed" }
            )),
            // Rate limited: very likely by our own flood of new tokens, so not a failure of the
            // server that may turn stale answers on for everyone.
            Failure::Retryable {
                status: Some(429), ..
            } => Error::unavailable(format!(
                "the {} answered HTTP 429: too many requests (no retry left within the deadline)",
                endpoint.name()
            )),
            Failure::Retryable {
                status: Some(s), ..
            } => Error::upstream_failure(format!(
                "the {} answered HTTP {s} (no retry left within the deadline)",
                endpoint.name()
            )),
            Failure::Retryable { status: None, .. } => Error::upstream_failure(format!(
                "no answer from the {}: the connection failed or broke off (no retry left within \
                 the deadline)",
                endpoint.name()
            )),
        }
    }
}

/// The shortest time worth starting a try with: a retry that would start later than this before
/// the deadline is not made.
const MIN_TRY: Duration = Duration::from_millis(50);

/// The OAuth2 `error` code of an error answer (RFC 6749 §5.2), read from at most
/// `MAX_ERROR_BODY` bytes of it.
async fn error_code(mut resp: reqwest::Response) -> Option<String> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        if body.len() + chunk.len() > MAX_ERROR_BODY {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    wire::oauth_error_code(&body)
}

/// The pause a `Retry-After` value asks for (RFC 9110 §10.2.3): whole seconds or an HTTP-date,
/// cut to [`MAX_RETRY_AFTER`]; `None` for anything else (a negative number, garbage), which then
/// gets the usual backoff.
fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "a very long time".
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencoding::encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_values() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21 07:28
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(retry_after("2", now), secs(2));
        assert_eq!(retry_after(" 0 ", now), secs(0));
        assert_eq!(
            retry_after("18446744073709551615", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_after("99999999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(retry_after("-5", now), None);
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("", now), None);
        assert_eq!(retry_after("1.5", now), None);
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), secs(30));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), secs(0));
        assert_eq!(
            retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
    }
}
