//! The Memcached backend, through the `async-memcached` crate (tokio, ASCII and meta protocols).
//!
//! Keys are spread over the configured servers with jump consistent hashing (adding a server moves
//! only its share of the keys). Each server has a small pool of idle connections: an operation
//! takes one (or connects), and gives it back only if the operation completed, so a connection
//! left in an unknown state by an error or a timeout is simply dropped. Each server has its own
//! circuit breaker: one dead server among several doesn't stop the others from being used.

use std::sync::Mutex;
use std::time::Duration;

use async_memcached::{AsciiProtocol, Client, Error as McError, MetaProtocol, Status};

use super::breaker::Breaker;
use crate::config::MemcachedConfig;

/// Idle connections kept per server.
const MAX_IDLE: usize = 32;

struct Server {
    dsn: String,
    idle: Mutex<Vec<Client>>,
    breaker: Breaker,
}

pub struct MemcachedBackend {
    servers: Vec<Server>,
}

fn err(e: McError) -> String {
    format!("memcached: {e}")
}

/// Memcached expiry in whole seconds; 0 would mean "never", so a TTL under a second isn't stored.
fn expiry_secs(ttl: Duration) -> Option<i64> {
    match ttl.as_secs() {
        0 => None,
        s => Some(s.min(2_592_000) as i64),
    }
}

impl Server {
    async fn take(&self) -> Result<Client, String> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(c) if !c.is_closed() => Ok(c),
            _ => Client::new(&self.dsn).await.map_err(err),
        }
    }

    fn give(&self, client: Client) {
        if client.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(client);
        }
    }
}

impl MemcachedBackend {
    pub fn new(config: &MemcachedConfig) -> MemcachedBackend {
        MemcachedBackend {
            servers: config
                .servers
                .iter()
                .map(|s| Server {
                    // async-memcached wants a URL; a bare "host:port" is the usual spelling.
                    dsn: if s.contains("://") {
                        s.clone()
                    } else {
                        format!("tcp://{s}")
                    },
                    idle: Mutex::new(Vec::new()),
                    breaker: Breaker::new(config.breaker_failures, config.breaker_cooldown),
                })
                .collect(),
        }
    }

    fn server(&self, key: &str) -> &Server {
        let h = blake3::hash(key.as_bytes());
        let n = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
        &self.servers[jump_hash(n, self.servers.len())]
    }

    /// The breaker of the server holding `key`.
    pub fn breaker(&self, key: &str) -> &Breaker {
        &self.server(key).breaker
    }

    pub fn breakers(&self) -> impl Iterator<Item = &Breaker> {
        self.servers.iter().map(|s| &s.breaker)
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let server = self.server(key);
        let mut c = server.take().await?;
        let v = c.get(key).await.map_err(err)?;
        server.give(c);
        Ok(v.and_then(|v| v.data))
    }

    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), String> {
        let Some(secs) = expiry_secs(ttl) else {
            return Ok(());
        };
        let server = self.server(key);
        let mut c = server.take().await?;
        c.set(key, value, Some(secs), None).await.map_err(err)?;
        server.give(c);
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> Result<(), String> {
        let server = self.server(key);
        let mut c = server.take().await?;
        match c.delete(key).await {
            Ok(()) | Err(McError::Protocol(Status::NotFound)) => {}
            Err(e) => return Err(err(e)),
        }
        server.give(c);
        Ok(())
    }

    /// Appends `member` to the list `key` (created on a miss) and makes it live `ttl` from now
    /// (the identity index, see `Shared::index_identities`): `ms key MA N<ttl>`, then a touch.
    pub async fn index_add(&self, key: &str, member: &str, ttl: Duration) -> Result<(), String> {
        let server = self.server(key);
        let mut c = server.take().await?;
        let secs = ttl.as_secs_f64().ceil().clamp(1.0, 2_592_000.0) as i64;
        let touch = format!("T{secs}");
        let item = format!("{member} ");
        // Append; a missing list is added (memcached's append does not create one), and if
        // another process added it meanwhile, appended to after all.
        let appended = |r: Result<Option<_>, McError>| match r {
            Ok(_) => Ok(true),
            Err(McError::Protocol(Status::NotStored | Status::NotFound)) => Ok(false),
            Err(e) => Err(err(e)),
        };
        if !appended(
            c.meta_set(key, item.as_str(), false, None, Some(&["MA"]))
                .await,
        )? {
            match c.add(key, item.as_str(), Some(secs), None).await {
                Ok(()) => {}
                Err(McError::Protocol(Status::NotStored | Status::Exists)) => {
                    appended(
                        c.meta_set(key, item.as_str(), false, None, Some(&["MA"]))
                            .await,
                    )?;
                }
                Err(e) => return Err(err(e)),
            }
        }
        match c.meta_get(key, false, None, Some(&[touch.as_str()])).await {
            Ok(_) | Err(McError::Protocol(Status::NotFound)) => {}
            Err(e) => return Err(err(e)),
        }
        server.give(c);
        Ok(())
    }

    /// The members of the list `key` (none when it does not exist).
    pub async fn index_members(&self, key: &str) -> Result<Vec<String>, String> {
        let value = self.get(key).await?.unwrap_or_default();
        let text = String::from_utf8_lossy(&value);
        let mut members: Vec<String> = text.split_whitespace().map(String::from).collect();
        members.sort_unstable();
        members.dedup();
        Ok(members)
    }

    /// `add lock owner ttl`: whether we now hold the lock. The lock lives on the server of the
    /// value's key, so that [`poll`](Self::poll) reads both in one request.
    pub async fn try_lock(
        &self,
        key: &str,
        lock: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, String> {
        let server = self.server(key);
        let mut c = server.take().await?;
        let secs = ttl.as_secs_f64().ceil().clamp(1.0, 2_592_000.0) as i64;
        let won = match c.add(lock, owner, Some(secs), None).await {
            Ok(()) => true,
            Err(McError::Protocol(Status::NotStored | Status::Exists)) => false,
            Err(e) => return Err(err(e)),
        };
        server.give(c);
        Ok(won)
    }

    /// Deletes the lock only if it still holds our owner value (compare-and-delete by CAS).
    pub async fn unlock(&self, key: &str, lock: &str, owner: &str) -> Result<(), String> {
        let server = self.server(key);
        let mut c = server.take().await?;
        let held = c
            .meta_get(lock, false, None, Some(&["v", "c"]))
            .await
            .map_err(err)?;
        if let Some(v) = held {
            if v.data.as_deref() == Some(owner.as_bytes()) {
                if let Some(cas) = v.cas {
                    let flag = format!("C{cas}");
                    match c
                        .meta_delete(lock, false, None, Some(&[flag.as_str()]))
                        .await
                    {
                        Ok(_)
                        | Err(McError::Protocol(
                            Status::NotFound | Status::Exists | Status::NotStored,
                        )) => {}
                        Err(e) => return Err(err(e)),
                    }
                }
            }
        }
        server.give(c);
        Ok(())
    }

    /// The value of `key` and whether `lock` is still held, in one request.
    pub async fn poll(&self, key: &str, lock: &str) -> Result<(Option<Vec<u8>>, bool), String> {
        let server = self.server(key);
        let mut c = server.take().await?;
        let values = match c.get_multi([key, lock]).await {
            Ok(v) => v,
            Err(McError::Protocol(Status::NotFound)) => Vec::new(),
            Err(e) => return Err(err(e)),
        };
        server.give(c);
        let mut value = None;
        let mut locked = false;
        for v in values {
            if v.key == key.as_bytes() {
                value = v.data;
            } else if v.key == lock.as_bytes() {
                locked = true;
            }
        }
        Ok((value, locked))
    }
}

/// Jump consistent hash (Lamping & Veach): a bucket in `0..buckets` for `key`.
fn jump_hash(mut key: u64, buckets: usize) -> usize {
    let (mut b, mut j) = (-1i64, 0i64);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b.max(0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_hash_spreads_and_is_stable() {
        let mut counts = [0usize; 3];
        for k in 0..3000u64 {
            let h = blake3::hash(&k.to_le_bytes());
            let n = u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap());
            let b = jump_hash(n, 3);
            counts[b] += 1;
            // Growing to 4 buckets moves a key only to the new bucket.
            let b4 = jump_hash(n, 4);
            assert!(b4 == b || b4 == 3);
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
        assert_eq!(jump_hash(42, 1), 0);
    }

    #[test]
    fn sub_second_ttls_are_not_stored_forever() {
        assert_eq!(expiry_secs(Duration::from_millis(999)), None);
        assert_eq!(expiry_secs(Duration::from_millis(1500)), Some(1));
    }
}
