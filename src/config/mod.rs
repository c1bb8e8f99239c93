//! The checker's configuration: one JSON document, parsed strictly.
//!
//! Every key is known: an unknown key, a wrong type or a bad value is an error naming the key
//! (the original silently ignored typos and crashed on `"timeout": "60"`). The caller's document
//! is only read, never changed.

mod cache;
mod memcached;
mod redis;
#[cfg(test)]
mod tests;

use std::time::Duration;

use serde_json::{Map, Value};

use crate::status::Error;

pub use cache::{BackendConfig, CacheConfig, MemoryConfig, NearCacheConfig};
pub use memcached::MemcachedConfig;
pub use redis::{RedisConfig, RedisTopology, SentinelConfig};

pub const DEFAULT_AUTH_URL: &str = "https://auth.globus.org";
pub const DEFAULT_GROUPS_URL: &str = "https://groups.api.globus.org";

/// How the token's scopes must match `expected_scopes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeMatch {
    /// At least one expected scope (the original behaviour).
    Any,
    /// Every expected scope.
    All,
}

/// When group memberships are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchGroups {
    /// Only when an authorization needs them (the default).
    Lazy,
    /// On every check.
    Eager,
    /// Never; group principals never match.
    Never,
}

/// A validated checker configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub client_id: String,
    pub client_secret: String,
    pub expected_scopes: Vec<String>,
    pub expected_audience: String,
    pub auth_url: String,
    pub groups_url: String,
    pub scope_match: ScopeMatch,
    pub leeway_s: i64,
    pub fetch_groups: FetchGroups,
    pub verify_credentials: bool,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_retries: u32,
    pub max_token_bytes: usize,
    pub max_response_bytes: usize,
    /// At most this many requests to Globus Auth/Groups in flight per checker; more wait (within
    /// their deadline) for a slot.
    pub max_concurrent_requests: usize,
    /// Serve a recent positive answer for up to this long past its cache lifetime when the
    /// authorization server is unavailable (never past the token's `exp`). Zero: fail closed.
    pub stale_if_error: Duration,
    /// `http://` to a host other than loopback was explicitly allowed (`allow_insecure_http`):
    /// credentials and tokens then travel in clear; creation logs a warning.
    pub allow_insecure_http: bool,
    /// Extra CA certificates (PEM, one bundle per file of `ca_certs`) trusted for
    /// `auth_url`/`groups_url` besides the built-in roots: for on-premises servers and tests.
    pub ca_certs: Vec<reqwest::Certificate>,
    /// `None`: reuse the process-wide cache as it is.
    pub cache: Option<CacheConfig>,
    /// Tells a checker's rules apart from every other checker's in the process, so that a cached
    /// answer can remember the last rules it passed. Given by `Checker::new` (the fields are
    /// public and may change before); 0, as parsed: never remembered.
    pub rules_id: u64,
}

impl Config {
    /// Parses and validates a configuration document.
    pub fn from_json(text: &str) -> Result<Config, Error> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::invalid_config(format!("config is not valid JSON: {e}")))?;
        Config::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<Config, Error> {
        let obj = value
            .as_object()
            .ok_or_else(|| Error::invalid_config("config must be a JSON object"))?;
        let mut keys = Keys::new(obj, "");
        let client_id = keys.required_string("client_id")?;
        let client_secret = keys.required_string("client_secret")?;
        let expected_scopes = keys.string_list("expected_scopes")?.ok_or_else(|| {
            Error::invalid_config("config key 'expected_scopes' is required (a list of scopes)")
        })?;
        if expected_scopes.is_empty() {
            return Err(Error::invalid_config(
                "config key 'expected_scopes' must name at least one scope",
            ));
        }
        let expected_audience = keys
            .string("expected_audience")?
            .unwrap_or_else(|| client_id.clone());
        let auth_url = keys.url("auth_url")?.unwrap_or(DEFAULT_AUTH_URL.into());
        let groups_url = keys.url("groups_url")?.unwrap_or(DEFAULT_GROUPS_URL.into());
        let scope_match = match keys.string("scope_match")?.as_deref() {
            None | Some("any") => ScopeMatch::Any,
            Some("all") => ScopeMatch::All,
            Some(other) => return Err(bad_value("scope_match", other, "\"any\" or \"all\"")),
        };
        let leeway_s = keys.integer("leeway_s", 0, 3600)?.unwrap_or(3) as i64;
        let fetch_groups = match keys.string("fetch_groups")?.as_deref() {
            None | Some("lazy") => FetchGroups::Lazy,
            Some("eager") => FetchGroups::Eager,
            Some("never") => FetchGroups::Never,
            Some(other) => {
                return Err(bad_value(
                    "fetch_groups",
                    other,
                    "\"lazy\", \"eager\" or \"never\"",
                ))
            }
        };
        let verify_credentials = keys.boolean("verify_credentials")?.unwrap_or(true);
        let connect_timeout = keys
            .millis("connect_timeout_ms", 1, 600_000)?
            .unwrap_or(2_000);
        let request_timeout = keys
            .millis("request_timeout_ms", 1, 600_000)?
            .unwrap_or(10_000);
        let max_retries = keys.integer("max_retries", 0, 10)?.unwrap_or(1) as u32;
        let max_token_bytes = keys
            .integer("max_token_bytes", 16, 1 << 20)?
            .unwrap_or(16 * 1024) as usize;
        let max_response_bytes = keys
            .integer("max_response_bytes", 1024, 64 << 20)?
            .unwrap_or(1 << 20) as usize;
        let max_concurrent_requests = keys
            .integer("max_concurrent_requests", 1, 100_000)?
            .unwrap_or(256) as usize;
        let stale_if_error = keys.integer("stale_if_error_s", 0, 86_400)?.unwrap_or(0);
        let allow_insecure_http = keys.boolean("allow_insecure_http")?.unwrap_or(false);
        for (key, url) in [("auth_url", &auth_url), ("groups_url", &groups_url)] {
            if !allow_insecure_http && url.starts_with("http://") && !is_loopback(url) {
                return Err(Error::invalid_config(format!(
                    "config key '{key}' is plain http:// to a host that is not loopback: the \
                     client secret and users' tokens would travel in clear; use https://, or set \
                     allow_insecure_http to true if you really mean it"
                )));
            }
        }
        let mut ca_certs = Vec::new();
        for path in keys.string_list("ca_certs")?.unwrap_or_default() {
            let pem = read_pem_file("ca_certs", &path)?;
            let bundle = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| {
                    Error::invalid_config(format!(
                        "config key 'ca_certs': {:?} holds no PEM certificate",
                        clip(&path)
                    ))
                })?;
            ca_certs.extend(bundle);
        }
        let cache = match keys.take("cache_config") {
            None | Some(Value::Null) => None,
            Some(v) => Some(CacheConfig::from_value(v)?),
        };
        keys.finish()?;
        Ok(Config {
            client_id,
            client_secret,
            expected_scopes,
            expected_audience,
            auth_url,
            groups_url,
            scope_match,
            leeway_s,
            fetch_groups,
            verify_credentials,
            connect_timeout: Duration::from_millis(connect_timeout),
            request_timeout: Duration::from_millis(request_timeout),
            max_retries,
            max_token_bytes,
            max_response_bytes,
            max_concurrent_requests,
            stale_if_error: Duration::from_secs(stale_if_error),
            allow_insecure_http,
            ca_certs,
            cache,
            rules_id: 0,
        })
    }
}

/// Whether a URL (already validated as http(s) with a host) names this machine: `localhost`,
/// 127.0.0.0/8 or `[::1]`.
fn is_loopback(url: &str) -> bool {
    let Some(host) = reqwest::Url::parse(url).ok().and_then(|u| {
        u.host_str()
            .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
    }) else {
        return false;
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Reads a PEM file named by config key `key`: a regular file of at most 1 MiB (not a pipe or a
/// device that never ends). Errors name the key and the (clipped) path.
pub fn read_pem_file(key: &str, path: &str) -> Result<Vec<u8>, Error> {
    const MAX_PEM_BYTES: u64 = 1 << 20;
    let shown = clip(path);
    let fail = |why: String| {
        Error::invalid_config(format!("config key '{key}': cannot read {shown:?}: {why}"))
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() || meta.len() > MAX_PEM_BYTES {
        return Err(fail(format!(
            "not a regular file of at most {MAX_PEM_BYTES} bytes"
        )));
    }
    std::fs::read(path).map_err(|e| fail(e.to_string()))
}

pub(super) fn bad_value(key: &str, got: &str, expected: &str) -> Error {
    Error::invalid_config(format!(
        "config key '{key}' has an unknown value {:?}; expected {expected}",
        clip(got)
    ))
}

/// At most 64 characters of something the caller wrote, for an error message: a hostile
/// configuration must not turn into a multi-megabyte message.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        None => s.to_string(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}

/// Reads keys out of one JSON object and reports what was left unread.
pub(super) struct Keys<'a> {
    obj: &'a Map<String, Value>,
    prefix: &'static str,
    seen: Vec<&'a str>,
}

impl<'a> Keys<'a> {
    pub(super) fn new(obj: &'a Map<String, Value>, prefix: &'static str) -> Self {
        Keys {
            obj,
            prefix,
            seen: Vec::new(),
        }
    }

    pub(super) fn take(&mut self, key: &'static str) -> Option<&'a Value> {
        let (k, v) = self.obj.get_key_value(key)?;
        self.seen.push(k.as_str());
        Some(v)
    }

    pub(super) fn wrong_type(&self, key: &str, expected: &str) -> Error {
        Error::invalid_config(format!(
            "config key '{}{key}' must be {expected}",
            self.prefix
        ))
    }

    pub(super) fn string(&mut self, key: &'static str) -> Result<Option<String>, Error> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.wrong_type(key, "a string")),
        }
    }

    pub(super) fn required_string(&mut self, key: &'static str) -> Result<String, Error> {
        match self.string(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            Some(_) => Err(self.wrong_type(key, "a non-empty string")),
            None => Err(Error::invalid_config(format!(
                "config key '{}{key}' is required",
                self.prefix
            ))),
        }
    }

    pub(super) fn url(&mut self, key: &'static str) -> Result<Option<String>, Error> {
        let Some(text) = self.string(key)? else {
            return Ok(None);
        };
        let parsed = reqwest::Url::parse(&text)
            .map_err(|e| self.wrong_type(key, &format!("an http:// or https:// URL ({e})")))?;
        let host_ok = parsed.host_str().is_some_and(|h| !h.is_empty());
        // The text itself is what requests are built from: it must say `http://` or `https://`
        // (the URL parser forgives `http:host`, `http:./host`, `HTTP://`, …).
        let prefix_ok = text.starts_with("http://") || text.starts_with("https://");
        if !prefix_ok
            || !matches!(parsed.scheme(), "http" | "https")
            || !host_ok
            || parsed.query().is_some()
            || parsed.fragment().is_some()
            || !parsed.username().is_empty()
            || parsed.password().is_some()
        {
            return Err(self.wrong_type(
                key,
                "an http:// or https:// URL with a host and no user, query or fragment",
            ));
        }
        Ok(Some(text.trim_end_matches('/').to_string()))
    }

    /// A list of non-empty strings; a single space-separated string is accepted too.
    pub(super) fn string_list(&mut self, key: &'static str) -> Result<Option<Vec<String>>, Error> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.split_whitespace().map(String::from).collect())),
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item.as_str() {
                        Some(s) if !s.trim().is_empty() => out.push(s.trim().to_string()),
                        _ => return Err(self.wrong_type(key, "a list of non-empty strings")),
                    }
                }
                Ok(Some(out))
            }
            Some(_) => Err(self.wrong_type(key, "a list of strings")),
        }
    }

    pub(super) fn boolean(&mut self, key: &'static str) -> Result<Option<bool>, Error> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.wrong_type(key, "true or false")),
        }
    }

    pub(super) fn integer(
        &mut self,
        key: &'static str,
        min: u64,
        max: u64,
    ) -> Result<Option<u64>, Error> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
                _ => Err(self.wrong_type(key, &format!("a whole number from {min} to {max}"))),
            },
            Some(_) => Err(self.wrong_type(key, &format!("a whole number from {min} to {max}"))),
        }
    }

    pub(super) fn millis(
        &mut self,
        key: &'static str,
        min: u64,
        max: u64,
    ) -> Result<Option<u64>, Error> {
        self.integer(key, min, max)
    }

    /// Seconds as a number (fractions allowed), 0 to 30 days.
    pub(super) fn seconds(&mut self, key: &'static str) -> Result<Option<Duration>, Error> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(v) if v.is_finite() && (0.0..=2_592_000.0).contains(&v) => {
                    Ok(Some(Duration::from_secs_f64(v)))
                }
                _ => Err(self.wrong_type(key, "a number of seconds from 0 to 2592000")),
            },
            Some(_) => Err(self.wrong_type(key, "a number of seconds (not a string)")),
        }
    }

    pub(super) fn finish(self) -> Result<(), Error> {
        let mut unknown: Vec<&str> = self
            .obj
            .keys()
            .map(String::as_str)
            .filter(|k| !self.seen.contains(k))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        unknown.sort_unstable();
        let list = unknown
            .iter()
            .take(5)
            .map(|k| format!("'{}{}'", self.prefix, clip(k)))
            .collect::<Vec<_>>()
            .join(", ");
        Err(Error::invalid_config(format!("unknown config key {list}")))
    }
}
