//! The Redis backend, through the `redis` crate's `ConnectionManager` (one multiplexed
//! connection, re-established by itself when it breaks).
//!
//! The connection is made on first use, not when the store is built, so a checker can be
//! created while Redis is down. Every command is bounded by the caller (see [`super::shared`]);
//! the connection manager's own connect and response timeouts are set to the same value.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ClientTlsConfig, Script, TlsCertificates};
use tokio::sync::OnceCell;

use crate::config::RedisConfig;
use crate::status::Error;

/// Deletes the lock only if it still holds our owner value (it may have expired and been taken).
const UNLOCK: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end"#;

pub struct RedisBackend {
    client: Client,
    conn: OnceCell<ConnectionManager>,
    timeout: Duration,
    unlock: Script,
}

fn err(e: redis::RedisError) -> String {
    // RedisError's text names the command and the server's answer, never our values.
    format!("redis: {e}")
}

impl RedisBackend {
    pub fn new(config: &RedisConfig) -> Result<RedisBackend, Error> {
        let bad_url = |e: redis::RedisError| {
            Error::invalid_config(format!(
                "cache_config.url is not a usable Redis URL: {}",
                e.detail().unwrap_or("cannot parse it")
            ))
        };
        let client = if config.tls_ca_file.is_some() || config.tls_client_cert.is_some() {
            // A PEM file: a regular file of sane size (not a pipe or a device that never ends).
            const MAX_PEM_BYTES: u64 = 1 << 20;
            let read = |key: &str, path: &str| {
                let shown = crate::config::clip(path);
                let fail = |why: String| {
                    Error::invalid_config(format!(
                        "cache_config.{key}: cannot read {shown:?}: {why}"
                    ))
                };
                let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
                if !meta.is_file() || meta.len() > MAX_PEM_BYTES {
                    return Err(fail(format!(
                        "not a regular file of at most {MAX_PEM_BYTES} bytes"
                    )));
                }
                std::fs::read(path).map_err(|e| fail(e.to_string()))
            };
            let root_cert = match &config.tls_ca_file {
                Some(path) => Some(read("ssl_ca_certs", path)?),
                None => None,
            };
            let client_tls = match &config.tls_client_cert {
                Some((cert, key)) => Some(ClientTlsConfig {
                    client_cert: read("ssl_certfile", cert)?,
                    client_key: read("ssl_keyfile", key)?,
                }),
                None => None,
            };
            Client::build_with_tls(
                config.url.as_str(),
                TlsCertificates {
                    client_tls,
                    root_cert,
                },
            )
            .map_err(bad_url)?
        } else {
            Client::open(config.url.as_str()).map_err(bad_url)?
        };
        Ok(RedisBackend {
            client,
            conn: OnceCell::new(),
            timeout: config.socket_timeout,
            unlock: Script::new(UNLOCK),
        })
    }

    async fn conn(&self) -> Result<ConnectionManager, String> {
        self.conn
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(self.timeout)
                    .set_response_timeout(self.timeout)
                    // One attempt per (re)connection: the breaker above paces the attempts,
                    // and a retry with backoff here would only hold callers up.
                    .set_number_of_retries(0);
                ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await
            .cloned()
            .map_err(err)
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let mut c = self.conn().await?;
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut c)
            .await
            .map_err(err)
    }

    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), String> {
        let mut c = self.conn().await?;
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async::<()>(&mut c)
            .await
            .map_err(err)
    }

    pub async fn delete(&self, key: &str) -> Result<(), String> {
        let mut c = self.conn().await?;
        redis::cmd("DEL")
            .arg(key)
            .query_async::<()>(&mut c)
            .await
            .map_err(err)
    }

    /// `SET lock owner NX PX ttl`: whether we now hold the lock.
    pub async fn try_lock(&self, lock: &str, owner: &str, ttl: Duration) -> Result<bool, String> {
        let mut c = self.conn().await?;
        let ok: Option<String> = redis::cmd("SET")
            .arg(lock)
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg((ttl.as_millis() as u64).max(1))
            .query_async(&mut c)
            .await
            .map_err(err)?;
        Ok(ok.is_some())
    }

    pub async fn unlock(&self, lock: &str, owner: &str) -> Result<(), String> {
        let mut c = self.conn().await?;
        self.unlock
            .key(lock)
            .arg(owner)
            .invoke_async::<i64>(&mut c)
            .await
            .map(|_| ())
            .map_err(err)
    }

    /// The value of `key` and whether `lock` is still held, in one round trip.
    pub async fn poll(&self, key: &str, lock: &str) -> Result<(Option<Vec<u8>>, bool), String> {
        let mut c = self.conn().await?;
        redis::pipe()
            .cmd("GET")
            .arg(key)
            .cmd("EXISTS")
            .arg(lock)
            .query_async(&mut c)
            .await
            .map_err(err)
    }
}
