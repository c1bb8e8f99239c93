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

mod wire;

use std::time::{Duration, Instant};

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
            .send(Endpoint::Introspect, true, deadline, || {
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
        // Not retried on an answer: a second grant would issue a second set of tokens.
        let answer = self
            .send(Endpoint::DependentToken, false, deadline, || {
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
            .send(Endpoint::Groups, true, deadline, || {
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
        retry_answers: bool,
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
            let retry_after = match &outcome {
                Ok(_) => None,
                Err(Failure::Retryable {
                    after, answered, ..
                }) if retry_answers || !answered => {
                    Some(after.unwrap_or(Duration::from_millis(50 << attempt.min(5))))
                }
                Err(_) => None,
            };
            // `Retry-After` is honoured in full, as long as the deadline leaves time for the
            // pause and something of a try after it; otherwise the call ends now.
            let fits = |delay: Duration| Instant::now() + delay + MIN_TRY < deadline;
            match (outcome, retry_after) {
                (Ok(v), _) => return Ok(v),
                (Err(f), Some(delay)) if attempt < self.max_retries && fits(delay) => {
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
        if let Some(len) = resp.content_length() {
            if len as usize > self.max_response_bytes {
                return Err(Failure::Fatal(Error::unavailable(format!(
                    "the {} answer is too large ({len} bytes, limit {})",
                    endpoint.name(),
                    self.max_response_bytes
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
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                return Err(Failure::Retryable {
                    after,
                    answered: true,
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
            if body.len() + chunk.len() > self.max_response_bytes {
                return Err(Failure::Fatal(Error::unavailable(format!(
                    "the {} answer exceeds the response size limit ({} bytes)",
                    endpoint.name(),
                    self.max_response_bytes
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
        answered: bool,
        status: Option<u16>,
    },
    Transport(String),
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
                answered: false,
                status: None,
            };
        }
        let what = if e.is_timeout() {
            "timed out"
        } else {
            "failed"
        };
        Failure::Transport(what.to_string())
    }

    fn into_error(self, endpoint: Endpoint) -> Error {
        match self {
            Failure::Fatal(e) => e,
            Failure::Transport(what) => {
                Error::upstream_failure(format!("the request to the {} {what}", endpoint.name()))
            }
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

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencoding::encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}
