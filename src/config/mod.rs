//! The checker's configuration: one JSON document, parsed strictly.
//!
//! Every key is known: an unknown key, a wrong type or a bad value is an error naming the key
//! (the original silently ignored typos and crashed on `"timeout": "60"`). The caller's document
//! is only read, never changed.
//!
//! Each part of the document is read into a `#[derive(Deserialize)]` struct of optional, typed
//! values (`de.rs`: how, and how errors name the key path), then validated in one function that
//! checks what types cannot say and builds the public types below: the top level here
//! (`RawConfig::validate`), `cache_config` in `cache.rs`, `redis.rs` and `memcached.rs`.

mod cache;
mod de;
mod memcached;
mod redis;
#[cfg(test)]
mod tests;

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::status::{clip, Error};
use de::{read, reject_unknown, Choice, Choices, Flag, HttpUrl, Text, Whole, Words};

pub use cache::{BackendConfig, CacheConfig, NearCacheConfig, SharedSettings};
pub use memcached::MemcachedConfig;
pub use redis::{RedisConfig, RedisTopology, SentinelConfig};

pub const DEFAULT_AUTH_URL: &str = "https://auth.globus.org";
pub const DEFAULT_GROUPS_URL: &str = "https://groups.api.globus.org";
/// `call_timeout_ms`'s default: under the 30 s a gunicorn worker may take per request, and
/// enough for an introspection, a grant and a Groups call with a retry each.
const DEFAULT_CALL_TIMEOUT_MS: u64 = 15_000;

/// How the token's scopes must match `expected_scopes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeMatch {
    /// At least one expected scope (the original behaviour).
    Any,
    /// Every expected scope.
    All,
}

/// When group memberships are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FetchGroups {
    /// Only when an authorization needs them (the default).
    Lazy,
    /// On every check.
    Eager,
    /// Never; group principals never match.
    Never,
}

/// A validated checker configuration. Its debug print hides the client secret.
#[derive(Clone)]
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
    /// Bounds every call end to end (introspection, grant, Groups, their retries and pauses, a
    /// fleet lock's wait): each stage gets what is left of it.
    pub call_timeout: Duration,
    pub max_token_bytes: usize,
    pub max_response_bytes: usize,
    /// At most this many requests to Globus Auth/Groups in flight per checker; more wait (within
    /// their deadline) for a slot.
    pub max_concurrent_requests: usize,
    /// Serve a recent positive answer for up to this long past its cache lifetime when the
    /// authorization server is unavailable (never past the token's `exp`). Zero: fail closed.
    pub stale_if_error: Duration,
    /// A hit on an active token's answer that has less than this left to live starts one
    /// background refresh (zero: off), so steady users never wait for an expiry.
    pub refresh_ahead: Duration,
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

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("client_id", &self.client_id)
            .field("client_secret", &"…")
            .field("expected_scopes", &self.expected_scopes)
            .field("expected_audience", &self.expected_audience)
            .field("auth_url", &self.auth_url)
            .field("groups_url", &self.groups_url)
            .field("scope_match", &self.scope_match)
            .field("leeway_s", &self.leeway_s)
            .field("fetch_groups", &self.fetch_groups)
            .field("verify_credentials", &self.verify_credentials)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("call_timeout", &self.call_timeout)
            .field("max_token_bytes", &self.max_token_bytes)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("stale_if_error", &self.stale_if_error)
            .field("refresh_ahead", &self.refresh_ahead)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("ca_certs", &self.ca_certs.len())
            .field("cache", &self.cache)
            .field("rules_id", &self.rules_id)
            .finish()
    }
}

impl Choices for ScopeMatch {
    const EXPECTED: &'static str = "\"any\" or \"all\"";
}

impl Choices for FetchGroups {
    const EXPECTED: &'static str = "\"lazy\", \"eager\" or \"never\"";
}

/// The top-level keys as written (`cache_config` is read on its own, see [`cache`]); every one
/// may be missing or `null`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    client_id: Option<Text>,
    client_secret: Option<Text>,
    expected_scopes: Option<Words>,
    expected_audience: Option<Text>,
    auth_url: Option<HttpUrl>,
    groups_url: Option<HttpUrl>,
    scope_match: Option<Choice<ScopeMatch>>,
    leeway_s: Option<Whole<0, 3600>>,
    fetch_groups: Option<Choice<FetchGroups>>,
    verify_credentials: Option<Flag>,
    connect_timeout_ms: Option<Whole<1, 600_000>>,
    request_timeout_ms: Option<Whole<1, 600_000>>,
    max_retries: Option<Whole<0, 10>>,
    call_timeout_ms: Option<Whole<1, 600_000>>,
    max_token_bytes: Option<Whole<16, { 1 << 20 }>>,
    max_response_bytes: Option<Whole<1024, { 64 << 20 }>>,
    max_concurrent_requests: Option<Whole<1, 100_000>>,
    stale_if_error_s: Option<Whole<0, 86_400>>,
    refresh_ahead_s: Option<Whole<0, 3_600>>,
    allow_insecure_http: Option<Flag>,
    ca_certs: Option<Words>,
}

impl Config {
    /// Parses and validates a configuration document.
    pub fn from_json(text: &str) -> Result<Config, Error> {
        // Through `Value`, so that both entry points give the same answer for the same document
        // (a repeated key: the last one, as `Value` keeps it).
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::invalid_config(format!("config is not valid JSON: {e}")))?;
        Config::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<Config, Error> {
        let obj = value
            .as_object()
            .ok_or_else(|| Error::invalid_config("config must be a JSON object"))?;
        let raw: RawConfig = read(obj, "")?;
        let config = raw.validate()?;
        let cache = match obj.get("cache_config") {
            None | Some(Value::Null) => None,
            Some(v) => Some(CacheConfig::from_value(v)?),
        };
        reject_unknown(obj, "", &[de::keys_of::<RawConfig>(), &["cache_config"]])?;
        Ok(Config { cache, ..config })
    }
}

/// The keys a derived checker may change (`tc_derive`): the rules, nothing that talks to a
/// server.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    expected_scopes: Option<Words>,
    expected_audience: Option<Text>,
    scope_match: Option<Choice<ScopeMatch>>,
    leeway_s: Option<Whole<0, 3600>>,
}

impl Config {
    /// This configuration with other rules (`expected_scopes`, `scope_match`,
    /// `expected_audience`, `leeway_s`; every other key is refused): what a derived checker uses.
    pub fn with_rules(&self, text: &str) -> Result<Config, Error> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::invalid_config(format!("rules are not valid JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| Error::invalid_config("rules must be a JSON object"))?;
        let raw: RawRules = read(obj, "")?;
        reject_unknown(obj, "", &[de::keys_of::<RawRules>()]).map_err(|e| {
            Error::invalid_config(format!(
                "{}; a derived checker may change only expected_scopes, scope_match, \
                 expected_audience and leeway_s",
                e.message
            ))
        })?;
        let mut config = self.clone_rules_base();
        if let Some(Words(scopes)) = raw.expected_scopes {
            if scopes.is_empty() {
                return Err(Error::invalid_config(
                    "config key 'expected_scopes' must name at least one scope",
                ));
            }
            config.expected_scopes = scopes;
        }
        if let Some(Text(aud)) = raw.expected_audience {
            config.expected_audience = aud;
        }
        if let Some(Choice(m)) = raw.scope_match {
            config.scope_match = m;
        }
        if let Some(Whole(l)) = raw.leeway_s {
            config.leeway_s = l as i64;
        }
        Ok(config)
    }

    /// A copy without the cache configuration (a derived checker never replaces the cache)
    /// and without rules id (given by the checker).
    fn clone_rules_base(&self) -> Config {
        Config {
            cache: None,
            rules_id: 0,
            ..self.clone()
        }
    }

    /// The configuration's top-level keys.
    pub fn keys() -> Vec<&'static str> {
        let mut keys = de::keys_of::<RawConfig>().to_vec();
        keys.push("cache_config");
        keys
    }

    /// The keys a derived checker may change ([`Self::with_rules`]).
    pub fn rule_keys() -> &'static [&'static str] {
        de::keys_of::<RawRules>()
    }

    /// What bindings need to know of a checker, without secrets: `tc_checker_info`.
    pub fn info(&self) -> Value {
        serde_json::json!({
            "client_id": self.client_id,
            "expected_scopes": self.expected_scopes,
            "expected_audience": self.expected_audience,
            "scope_match": match self.scope_match { ScopeMatch::Any => "any", ScopeMatch::All => "all" },
            "leeway_s": self.leeway_s,
            "fetch_groups": match self.fetch_groups {
                FetchGroups::Lazy => "lazy",
                FetchGroups::Eager => "eager",
                FetchGroups::Never => "never",
            },
            "auth_url": self.auth_url,
            "groups_url": self.groups_url,
            "call_timeout_ms": self.call_timeout.as_millis() as u64,
            "max_token_bytes": self.max_token_bytes,
            "max_concurrent_requests": self.max_concurrent_requests,
            "stale_if_error_s": self.stale_if_error.as_secs(),
            "refresh_ahead_s": self.refresh_ahead.as_secs(),
        })
    }
}

impl RawConfig {
    /// What the types do not say: required keys, the plain-http rule, the CA files.
    fn validate(self) -> Result<Config, Error> {
        let required = |key: &str, v: Option<Text>| match v {
            Some(Text(s)) if !s.is_empty() => Ok(s),
            Some(_) => Err(Error::invalid_config(format!(
                "config key '{key}' must be a non-empty string"
            ))),
            None => Err(Error::invalid_config(format!(
                "config key '{key}' is required"
            ))),
        };
        let client_id = required("client_id", self.client_id)?;
        let client_secret = required("client_secret", self.client_secret)?;
        let Some(Words(expected_scopes)) = self.expected_scopes else {
            return Err(Error::invalid_config(
                "config key 'expected_scopes' is required (a list of scopes)",
            ));
        };
        if expected_scopes.is_empty() {
            return Err(Error::invalid_config(
                "config key 'expected_scopes' must name at least one scope",
            ));
        }
        let expected_audience = self.expected_audience.map_or(client_id.clone(), |t| t.0);
        let auth_url = self.auth_url.map_or(DEFAULT_AUTH_URL.into(), |u| u.0);
        let groups_url_given = self.groups_url.is_some();
        let groups_url = self.groups_url.map_or(DEFAULT_GROUPS_URL.into(), |u| u.0);
        let allow_insecure_http = self.allow_insecure_http.is_some_and(|f| f.0);
        for (key, url) in [("auth_url", &auth_url), ("groups_url", &groups_url)] {
            if !allow_insecure_http && url.starts_with("http://") && !is_loopback(url) {
                return Err(Error::invalid_config(format!(
                    "config key '{key}' is plain http:// to a host that is not loopback: the \
                     client secret and users' tokens would travel in clear; use https://, or set \
                     allow_insecure_http to true if you really mean it"
                )));
            }
        }
        let fetch_groups = self.fetch_groups.map_or(FetchGroups::Lazy, |c| c.0);
        if !groups_url_given && auth_url != DEFAULT_AUTH_URL && fetch_groups != FetchGroups::Never {
            // Dependent tokens from another server sent to production Globus Groups: a leak of
            // that server's tokens, and never a right answer.
            return Err(Error::invalid_config(
                "config key 'groups_url' is required when 'auth_url' is not Globus Auth's \
                 (https://auth.globus.org): group lookups would send this server's dependent \
                 tokens to production Globus Groups; set groups_url, or fetch_groups to \"never\"",
            ));
        }
        let mut ca_certs = Vec::new();
        for path in self.ca_certs.map(|w| w.0).unwrap_or_default() {
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
        let millis = |w: Option<Whole<1, 600_000>>, default| {
            Duration::from_millis(w.map_or(default, |w| w.0))
        };
        Ok(Config {
            client_id,
            client_secret,
            expected_scopes,
            expected_audience,
            auth_url,
            groups_url,
            scope_match: self.scope_match.map_or(ScopeMatch::Any, |c| c.0),
            leeway_s: self.leeway_s.map_or(3, |w| w.0) as i64,
            fetch_groups,
            verify_credentials: self.verify_credentials.map_or(true, |f| f.0),
            connect_timeout: millis(self.connect_timeout_ms, 2_000),
            request_timeout: millis(self.request_timeout_ms, 10_000),
            max_retries: self.max_retries.map_or(1, |w| w.0) as u32,
            call_timeout: millis(self.call_timeout_ms, DEFAULT_CALL_TIMEOUT_MS),
            max_token_bytes: self.max_token_bytes.map_or(16 * 1024, |w| w.0) as usize,
            max_response_bytes: self.max_response_bytes.map_or(1 << 20, |w| w.0) as usize,
            max_concurrent_requests: self.max_concurrent_requests.map_or(256, |w| w.0) as usize,
            stale_if_error: Duration::from_secs(self.stale_if_error_s.map_or(0, |w| w.0)),
            refresh_ahead: Duration::from_secs(self.refresh_ahead_s.map_or(0, |w| w.0)),
            allow_insecure_http,
            ca_certs,
            cache: None,
            rules_id: 0,
        })
    }
}

/// Whether a URL (already validated as http(s) with a host) names this machine: `localhost`,
/// 127.0.0.0/8 or `[::1]`.
pub fn is_loopback(url: &str) -> bool {
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
