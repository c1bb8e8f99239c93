//! The Memcached backend, through the `async-memcached` crate (tokio, ASCII and meta protocols).
//!
//! Keys are spread over the configured servers with jump consistent hashing (adding a server moves
//! only its share of the keys). Each server has a small pool of idle connections: an operation
//! takes one (or connects), and gives it back only if the operation completed, so a connection
//! left in an unknown state by an error or a timeout is simply dropped. Each server has its own
//! circuit breaker (one shard each, see [`SharedBackend::shard`]): one dead server among several
//! doesn't stop the others from being used.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_memcached::{AsciiProtocol, Client, Error as McError, MetaProtocol, Status};

use super::backend::{LogUpdate, Op, Pair, SharedBackend};
use super::{purges, Source};
use crate::config::MemcachedConfig;

/// Idle connections kept per server.
const MAX_IDLE: usize = 32;

struct Server {
    dsn: String,
    idle: Mutex<Vec<Client>>,
}

pub struct MemcachedBackend {
    servers: Vec<Server>,
    /// The largest purge log the servers took so far is below this (learned from a refusal:
    /// memcached deletes an item whose update it refuses as too large, so the log stays under
    /// it from then on).
    log_limit: AtomicUsize,
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
                })
                .collect(),
            log_limit: AtomicUsize::new(usize::MAX),
        }
    }

    fn server(&self, key: &str) -> &Server {
        &self.servers[self.shard(key)]
    }
}

impl SharedBackend for MemcachedBackend {
    fn source(&self) -> Source {
        Source::Memcached
    }

    /// One breaker per server.
    fn shards(&self) -> usize {
        self.servers.len()
    }

    fn shard(&self, key: &str) -> usize {
        let h = blake3::hash(key.as_bytes());
        let n = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
        jump_hash(n, self.servers.len())
    }

    fn get<'a>(&'a self, key: &'a str) -> Op<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let server = self.server(key);
            let mut c = server.take().await?;
            let v = c.get(key).await.map_err(err)?;
            server.give(c);
            Ok(v.and_then(|v| v.data))
        })
    }

    fn set<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> Op<'a, ()> {
        Box::pin(async move {
            let Some(secs) = expiry_secs(ttl) else {
                return Ok(());
            };
            let server = self.server(key);
            let mut c = server.take().await?;
            c.set(key, value, Some(secs), None).await.map_err(err)?;
            server.give(c);
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> Op<'a, ()> {
        Box::pin(async move {
            let server = self.server(key);
            let mut c = server.take().await?;
            match c.delete(key).await {
                Ok(()) | Err(McError::Protocol(Status::NotFound)) => {}
                Err(e) => return Err(err(e)),
            }
            server.give(c);
            Ok(())
        })
    }

    /// The index is a list of members separated by spaces: `ms key MA` appends `member` (an
    /// `add` creates a missing list), then a touch (`mg key T<ttl>`) makes it live `ttl`.
    /// One multi-get when both keys live on one server, else one get on each, concurrently.
    fn get_pair<'a>(&'a self, key: &'a str, other: &'a str) -> Op<'a, Pair> {
        Box::pin(async move {
            if self.shard(key) != self.shard(other) {
                return futures::try_join!(self.get(key), self.get(other));
            }
            let server = self.server(key);
            let mut c = server.take().await?;
            let values = match c.get_multi([key, other]).await {
                Ok(v) => v,
                Err(McError::Protocol(Status::NotFound)) => Vec::new(),
                Err(e) => return Err(err(e)),
            };
            server.give(c);
            let (mut first, mut second) = (None, None);
            for v in values {
                if v.key == key.as_bytes() {
                    first = v.data;
                } else if v.key == other.as_bytes() {
                    second = v.data;
                }
            }
            Ok((first, second))
        })
    }

    /// Compare-and-swap (`mg` with the CAS value, `ms` with `C<cas>`; `add` when the log does
    /// not exist), a few times when another process wrote in between; a value the server
    /// refuses as too large is collapsed (see `purges`).
    fn log_add<'a>(&'a self, key: &'a str, u: LogUpdate<'a>) -> Op<'a, ()> {
        Box::pin(async move {
            const TRIES: usize = 8;
            let server = self.server(key);
            let mut c = server.take().await?;
            let secs = u.ttl.as_secs_f64().ceil().clamp(1.0, 2_592_000.0) as i64;
            let ttl_flag = format!("T{secs}");
            let mut max_bytes = u.max_bytes.min(self.log_limit.load(Ordering::Relaxed));
            for _ in 0..TRIES {
                let current = match c.meta_get(key, false, None, Some(&["v", "c"])).await {
                    Ok(v) => v,
                    Err(McError::Protocol(Status::NotFound)) => None,
                    Err(e) => return Err(err(e)),
                };
                let value = purges::updated(
                    current
                        .as_ref()
                        .and_then(|v| v.data.as_deref())
                        .unwrap_or(b""),
                    u.head,
                    u.cutoff_ms,
                    max_bytes,
                    u.now_ms,
                );
                let result = match current.as_ref().and_then(|v| v.cas) {
                    Some(cas) => {
                        let cas_flag = format!("C{cas}");
                        c.meta_set(
                            key,
                            value.as_slice(),
                            false,
                            None,
                            Some(&[cas_flag.as_str(), ttl_flag.as_str()]),
                        )
                        .await
                        .map(|_| ())
                    }
                    None => c.add(key, value.as_slice(), Some(secs), None).await,
                };
                match result {
                    Ok(()) => {
                        server.give(c);
                        return Ok(());
                    }
                    // Another process wrote first: read again.
                    Err(McError::Protocol(
                        Status::Exists | Status::NotStored | Status::NotFound,
                    )) => {}
                    // Refused as too large (a server with a small item size), which deleted the
                    // log: write it collapsed (it then covers every purge the lost one held),
                    // and keep it under this size from now on. The connection is not reused
                    // after a server error.
                    Err(e) if max_bytes > 0 => {
                        crate::log::log_info!(
                            "memcached: the purge log was refused at {} bytes ({e}); collapsing \
                             it, and keeping it smaller from now on",
                            value.len()
                        );
                        self.log_limit
                            .fetch_min(value.len().saturating_sub(1), Ordering::Relaxed);
                        max_bytes = 0;
                        c = server.take().await?;
                    }
                    Err(e) => return Err(err(e)),
                }
            }
            Err(format!(
                "memcached: the purge log {key:?} kept changing; gave up after {TRIES} tries"
            ))
        })
    }

    fn try_lock<'a>(
        &'a self,
        key: &'a str,
        lock: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> Op<'a, bool> {
        Box::pin(async move {
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
        })
    }

    /// Compare-and-delete by CAS: `mg lock v c`, then `md lock C<cas>` if it holds `owner`.
    fn unlock<'a>(&'a self, key: &'a str, lock: &'a str, owner: &'a str) -> Op<'a, ()> {
        Box::pin(async move {
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
        })
    }

    /// One `get key lock` (both live on the key's server).
    fn poll<'a>(&'a self, key: &'a str, lock: &'a str) -> Op<'a, (Option<Vec<u8>>, bool)> {
        Box::pin(async move {
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
        })
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
