//! The fleet-wide fetch lock of a shared backend: one fetch per key for the whole fleet, released
//! when the fetch ends or is dropped, never held past the fetch's deadline.

use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::OsRng;
use futures::future::BoxFuture;

use super::{Shared, Unavailable};
use crate::cache::backend::SharedBackend;
use crate::cache::{CacheKey, Entry, Fetched};
use crate::clock::Moment;
use crate::model::Source;
use crate::stats::stats;
use crate::status::Error;

/// The first pause of a process waiting for another one's fetch.
const FIRST_POLL: Duration = Duration::from_millis(1);

impl Shared {
    /// Fetches the entry for `key` once for the fleet (see the module documentation), stores it
    /// in the backend (unless its TTL is zero) and returns it, with where it came from.
    /// `deadline` is the fetch's (its flight's): no lock wait and no lock outlives it. A refresh
    /// gives `expiring`, its current answer's expiry: a value found in the backend is taken only
    /// if it outlives that (another process refreshed it).
    pub async fn fetch<F>(
        &self,
        key: CacheKey,
        deadline: Instant,
        expiring: Option<Moment>,
        fetch: F,
    ) -> Result<(Entry, Source), Error>
    where
        F: FnOnce() -> BoxFuture<'static, Result<Fetched, Error>>,
    {
        let text = key.to_text(&self.settings.prefix);
        let mut held = None;
        // A purged key whose removal has not reached the backend yet: fetch without the lock
        // (whose holder reads the backend's value).
        let purged = self.removal_pending(&text).await;
        if self.settings.distributed_lock && !purged {
            match self.acquire_or_wait(&key, &text, deadline, expiring).await {
                Acquired::Value(entry) => return Ok((entry, self.source)),
                Acquired::Lock(lock) => held = Some(lock),
                Acquired::Nothing => {}
            }
        }
        // The last purge this process knows of before the fetch starts: a later one covers the
        // answer (see `purges`).
        let seq = self.purge_seq();
        let result = fetch().await.map(Fetched::into_entry);
        if let Ok(entry) = &result {
            // Stored even for a purged key: the fresh answer replaces the purged one.
            if entry.expires_at > Moment::now() {
                self.put_text(key, &text, entry, seq).await;
            }
        }
        if let Some(lock) = held {
            lock.release(self).await;
        }
        result.map(|entry| (entry, Source::Network))
    }

    async fn acquire_or_wait(
        &self,
        key: &CacheKey,
        text: &str,
        deadline: Instant,
        expiring: Option<Moment>,
    ) -> Acquired {
        let newer = |e: &Entry| expiring.map_or(true, |x| e.expires_at > x);
        let lock = format!("{text}.lock");
        let owner = random_owner();
        let give_up =
            (Instant::now() + self.settings.lock_timeout * 2 + self.settings.socket_timeout)
                .min(deadline);
        loop {
            // Never held past the fetch's deadline, even if this process dies holding it.
            let ttl = self
                .settings
                .lock_timeout
                .min(deadline.saturating_duration_since(Instant::now()))
                .max(Duration::from_millis(1));
            match self
                .guarded(text, self.backend.try_lock(text, &lock, &owner, ttl))
                .await
            {
                Err(Unavailable) => return Acquired::Nothing,
                Ok(true) => {
                    stats().backend_lock_acquired.inc();
                    let held = HeldLock {
                        backend: self.backend.clone(),
                        text: text.to_string(),
                        lock: lock.clone(),
                        owner: owner.clone(),
                        timeout: self.settings.socket_timeout,
                        armed: true,
                    };
                    // Another process may have stored the value between our miss and our lock.
                    if let Ok((Some(bytes), log)) = self
                        .guarded(text, self.backend.get_pair(text, &self.log_text))
                        .await
                    {
                        self.note_log(log.as_deref());
                        if let Some(entry) = self.open(key, text, &bytes).filter(newer) {
                            held.release(self).await;
                            return Acquired::Value(entry);
                        }
                    }
                    return Acquired::Lock(held);
                }
                Ok(false) => {
                    stats().backend_lock_waits.inc();
                    let mut pause = FIRST_POLL;
                    loop {
                        if Instant::now() + pause >= give_up {
                            return Acquired::Nothing;
                        }
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(self.settings.lock_sleep);
                        match self.guarded(text, self.backend.poll(text, &lock)).await {
                            Err(Unavailable) => return Acquired::Nothing,
                            Ok((Some(bytes), locked)) => {
                                match self.open(key, text, &bytes).filter(newer) {
                                    Some(entry) => return Acquired::Value(entry),
                                    None if locked => continue,
                                    None => break,
                                }
                            }
                            Ok((None, true)) => continue,
                            // The holder is gone without storing anything: take over.
                            Ok((None, false)) => break,
                        }
                    }
                }
            }
        }
    }
}

/// A fetch lock this process holds: released by [`HeldLock::release`], or, when the fetch's
/// future is dropped first (every caller gave up), by a task of its own, so the token does not
/// stall for the whole fleet until the lock expires.
struct HeldLock {
    backend: Arc<dyn SharedBackend>,
    text: String,
    lock: String,
    owner: String,
    timeout: Duration,
    armed: bool,
}

impl HeldLock {
    async fn release(mut self, shared: &Shared) {
        self.armed = false;
        let _ = shared
            .guarded(
                &self.text,
                self.backend.unlock(&self.text, &self.lock, &self.owner),
            )
            .await;
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // the lock expires with its TTL (at most the fetch's deadline)
        };
        let (backend, text, lock, owner, timeout) = (
            self.backend.clone(),
            std::mem::take(&mut self.text),
            std::mem::take(&mut self.lock),
            std::mem::take(&mut self.owner),
            self.timeout,
        );
        stats().backend_lock_released_on_drop.inc();
        runtime.spawn(async move {
            let _ = tokio::time::timeout(timeout, backend.unlock(&text, &lock, &owner)).await;
        });
    }
}

enum Acquired {
    /// Another process fetched it meanwhile.
    Value(Entry),
    /// We hold the lock and must fetch.
    Lock(HeldLock),
    /// No lock (the backend is unavailable, or waiting took too long): fetch anyway.
    Nothing,
}

fn random_owner() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    let mut s = String::with_capacity(32);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
