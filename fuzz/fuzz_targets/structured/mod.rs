//! Structure-aware inputs: when the fuzzer's bytes are not JSON, they drive a generator of JSON
//! documents built from the keys and values the library knows (configuration keys, Globus
//! answers' fields, authorization requests) and edge numbers, so that mutations explore
//! meanings instead of JSON syntax errors.

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use serde_json::{Map, Number, Value};

pub const KEYS: &[&str] = &[
    // configuration
    "client_id",
    "client_secret",
    "expected_scopes",
    "expected_audience",
    "auth_url",
    "groups_url",
    "scope_match",
    "leeway_s",
    "fetch_groups",
    "verify_credentials",
    "connect_timeout_ms",
    "request_timeout_ms",
    "max_retries",
    "max_token_bytes",
    "max_response_bytes",
    "max_concurrent_requests",
    "stale_if_error_s",
    "cache_config",
    "backend",
    "timeout",
    "max_entries",
    "url",
    "host",
    "port",
    "db",
    "password",
    "socket_timeout",
    "distributed_lock",
    "lock_timeout",
    "redis_expiration_time",
    "memcached_expire_time",
    "prefix",
    "near_cache_ttl",
    "near_cache_max_entries",
    "lock_sleep",
    "breaker_failures",
    "breaker_cooldown",
    "dead_retry",
    "thread_local_lock",
    // Globus answers
    "active",
    "scope",
    "sub",
    "username",
    "name",
    "email",
    "aud",
    "exp",
    "nbf",
    "iat",
    "identity_set",
    "token_type",
    "iss",
    "access_token",
    "expires_in",
    "resource_server",
    "refresh_token",
    "id",
    "my_memberships",
    "role",
    "status",
    "group_id",
    "identity_id",
    // authorization requests
    "allowed_principals",
    "allow_public",
    "allow_all_authenticated_users",
];

pub const STRINGS: &[&str] = &[
    "",
    " ",
    "a",
    "c",
    "s",
    "test-client",
    "test-secret",
    "urn:globus:auth:scope:test:all",
    "urn:globus:auth:scope:test:all openid",
    "any",
    "all",
    "lazy",
    "eager",
    "never",
    "memory",
    "redis",
    "memcached",
    "dogpile.cache.redis",
    "dogpile.cache.memcached",
    "dogpile.cache.memory",
    "http://127.0.0.1:9",
    "https://auth.globus.org",
    "redis://127.0.0.1:6379/0",
    "rediss://h",
    "unix:///tmp/r.sock",
    "127.0.0.1:11211",
    "member",
    "manager",
    "admin",
    "active",
    "pending",
    "Bearer",
    "public",
    "all_authenticated_users",
    "urn:globus:auth:identity:a11ce000-0000-4000-8000-000000000001",
    "urn:globus:groups:id:11111111-1111-4111-8111-111111111111",
    "a11ce000-0000-4000-8000-000000000001",
    "11111111-1111-4111-8111-111111111111",
    "groups.api.globus.org",
];

/// Prefixes to which the generator appends arbitrary text.
const PREFIXES: &[&str] = &[
    "http://",
    "https://",
    "redis://",
    "rediss://",
    "redis+unix://",
    "unix://",
    "tcp://",
    "urn:globus:auth:identity:",
    "urn:globus:groups:id:",
];

const INTS: &[i64] = &[
    0,
    1,
    -1,
    2,
    3,
    10,
    16,
    1024,
    3600,
    65535,
    65536,
    86_400,
    172_800,
    2_592_000,
    2_592_001,
    1 << 20,
    (1 << 20) + 1,
    64 << 20,
    1 << 32,
    1_767_225_600,
    i32::MAX as i64,
    i64::MAX,
    i64::MAX - 1,
    i64::MIN,
    i64::MIN + 1,
];

const FLOATS: &[f64] = &[
    0.0,
    -0.0,
    0.5,
    0.001,
    1.5,
    1e-300,
    1e300,
    -1e300,
    1.7e308,
    9.3e18,
    -9.3e18,
    1.8e19,
    2_592_000.0,
    2_592_000.5,
    1_767_225_600.5,
];

fn string(u: &mut Unstructured) -> Result<String> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 | 1 => (*u.choose(STRINGS)?).to_string(),
        2 => format!("{}{}", u.choose(PREFIXES)?, u.arbitrary::<&str>()?),
        _ => u.arbitrary::<&str>()?.to_string(),
    })
}

fn number(u: &mut Unstructured) -> Result<Value> {
    Ok(match u.int_in_range(0..=4u8)? {
        0 | 1 => Value::from(*u.choose(INTS)?),
        2 => Value::from(u.arbitrary::<i64>()?),
        3 => Value::from(u.arbitrary::<u64>()?),
        _ => {
            let f = if u.arbitrary()? {
                *u.choose(FLOATS)?
            } else {
                u.arbitrary::<f64>()?
            };
            Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
    })
}

/// A JSON value, at most `depth` levels deep.
pub fn value(u: &mut Unstructured, depth: u32) -> Result<Value> {
    let top = if depth == 0 { 4 } else { 6 };
    Ok(match u.int_in_range(0..=top)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => number(u)?,
        3 | 4 => Value::String(string(u)?),
        5 => {
            let n = u.int_in_range(0..=4u8)?;
            Value::Array((0..n).map(|_| value(u, depth - 1)).collect::<Result<_>>()?)
        }
        _ => object(u, depth - 1)?,
    })
}

/// An object with mostly known keys.
pub fn object(u: &mut Unstructured, depth: u32) -> Result<Value> {
    let n = u.int_in_range(0..=8u8)?;
    let mut m = Map::new();
    for _ in 0..n {
        let key = if u.int_in_range(0..=7u8)? > 0 {
            (*u.choose(KEYS)?).to_string()
        } else {
            u.arbitrary::<&str>()?.to_string()
        };
        m.insert(key, value(u, depth)?);
    }
    Ok(Value::Object(m))
}

/// The document the input stands for: itself when it is JSON, else a generated one (an object
/// or a list of objects).
pub fn document(data: &[u8]) -> Option<Value> {
    if let Ok(v) = serde_json::from_slice(data) {
        return Some(v);
    }
    let mut u = Unstructured::new(data);
    let v = if u.arbitrary::<bool>().ok()? {
        object(&mut u, 3).ok()?
    } else {
        let n = u.int_in_range(0..=4u8).ok()?;
        Value::Array(
            (0..n)
                .map(|_| object(&mut u, 2))
                .collect::<Result<_>>()
                .ok()?,
        )
    };
    Some(v)
}
