//! How an entry is written to a shared backend: a one-way key and a sealed (encrypted and
//! authenticated) value, so a dump of the backend shows neither tokens nor who they belong to.
//!
//! Everything is derived from the [`TokenId`](super::keys::TokenId), the keyed BLAKE3 hash of the token
//! under a key derived from the client id, client secret and authorization server URL:
//!
//! * the backend key is `<prefix><kind>:<hex of derive_key("… backend key", id)>`, a one-way
//!   function of the id (see [`CacheKey::to_text`]);
//! * the value is sealed with XChaCha20-Poly1305 under `derive_key("… entry seal", id)`, with a
//!   random 24-byte nonce and the backend key as associated data.
//!
//! Every process of a fleet configured with the same credentials computes the same id for a token,
//! hence the same backend key and sealing key; a checker with other credentials computes other
//! ids and can neither find nor open these entries. Whoever can read or write the backend sees only
//! the one-way key, so cannot derive the sealing key without both a token and the credentials: a
//! value that was forged, altered or copied to another key fails to open, and is treated as a miss.
//!
//! Wire format: `0x01 ‖ nonce (24 bytes) ‖ ciphertext ‖ tag (16 bytes)`; the plaintext is a JSON
//! payload holding the kind, the fetch and expiry instants (unix milliseconds, so the age and
//! the lifetime survive the trip to another process), the entry's identity filter (see
//! [`super::identity_filter`]) and the value. Values of an earlier, unreleased development
//! format (the identity list instead of the filter) are treated as malformed: a miss, fetched
//! again and overwritten.

use std::sync::Arc;
use std::time::Duration;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload as AeadPayload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use super::keys::{CacheKey, Kind};
use super::{Entry, Value};
use crate::clock::{unix_ms, Moment};
use crate::model::{DependentToken, GroupList, IdentityFilter, Introspection, TokenInfo};

const VERSION: u8 = 2;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const SEAL_CONTEXT: &str = "tokenchecker 2026-11 shared cache entry seal v1";

/// Why a stored value was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Not a sealed value of this format (garbage, or another program's value).
    Malformed,
    /// The seal does not open: forged, altered, or copied from another key.
    Forged,
    /// It opened, but what it holds is not an entry of this key's kind.
    WrongContent,
}

#[derive(Serialize)]
struct PayloadRef<'a> {
    k: char,
    /// Fetched at, unix milliseconds.
    f: u64,
    /// Expires at, unix milliseconds.
    e: u64,
    /// The identity filter.
    b: u64,
    /// The purge log's sequence number when the fetch started (see `purges`).
    q: u64,
    v: BodyRef<'a>,
}

#[derive(Serialize)]
enum BodyRef<'a> {
    /// Decoded from the cached answer's rendered text (see [`TokenInfo::to_introspection`]).
    I(Box<Introspection>),
    G(Vec<String>),
    D(&'a [DependentToken]),
}

#[derive(Deserialize)]
struct Payload {
    k: char,
    f: u64,
    e: u64,
    b: u64,
    #[serde(default)]
    q: u64,
    v: Body,
}

#[derive(Deserialize)]
enum Body {
    I(Box<Introspection>),
    G(Vec<String>),
    D(Vec<DependentToken>),
}

fn cipher(key: &CacheKey) -> XChaCha20Poly1305 {
    let mut material = [0u8; 33];
    material[0] = key.kind as u8;
    material[1..].copy_from_slice(&key.id);
    let k = blake3::derive_key(SEAL_CONTEXT, &material);
    XChaCha20Poly1305::new((&k).into())
}

/// The sealed bytes of `entry`, stored under the backend key `text` for `ttl` (at most what is
/// left of the entry's lifetime).
pub fn seal(key: &CacheKey, text: &str, entry: &Entry, ttl: Duration) -> Vec<u8> {
    seal_after(key, text, entry, ttl, 0)
}

/// [`seal`], for an entry whose fetch started when the purge log's sequence number was
/// `purge_seq` (see `purges`).
pub fn seal_after(
    key: &CacheKey,
    text: &str,
    entry: &Entry,
    ttl: Duration,
    purge_seq: u64,
) -> Vec<u8> {
    let now_ms = unix_ms();
    let ttl = ttl.min(entry.expires_at.saturating_duration_since(Moment::now()));
    let body = match &entry.value {
        Value::Introspection(info) => BodyRef::I(Box::new(info.to_introspection())),
        Value::Groups(g) => BodyRef::G(g.to_vec()),
        Value::DependentTokens(t) => BodyRef::D(t),
    };
    let payload = PayloadRef {
        k: key.kind as u8 as char,
        f: now_ms.saturating_sub(entry.fetched_at.elapsed().as_millis() as u64),
        e: now_ms + ttl.as_millis() as u64,
        b: entry.identities.0,
        q: purge_seq,
        v: body,
    };
    let plain = serde_json::to_vec(&payload).expect("a cache entry always serializes");
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let sealed = cipher(key)
        .encrypt(
            &nonce,
            AeadPayload {
                msg: &plain,
                aad: text.as_bytes(),
            },
        )
        .expect("sealing cannot fail for a payload this small");
    let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Opens a value read from the backend key `text`: `Ok(None)` if it has expired meanwhile.
pub fn open(key: &CacheKey, text: &str, bytes: &[u8]) -> Result<Option<Entry>, Rejected> {
    Ok(open_with_seq(key, text, bytes)?.map(|(entry, _)| entry))
}

/// [`open`], with the purge log's sequence number the entry was sealed with.
pub fn open_with_seq(
    key: &CacheKey,
    text: &str,
    bytes: &[u8],
) -> Result<Option<(Entry, u64)>, Rejected> {
    if bytes.len() < 1 + NONCE_LEN + TAG_LEN || bytes[0] != VERSION {
        return Err(Rejected::Malformed);
    }
    let nonce = XNonce::from_slice(&bytes[1..1 + NONCE_LEN]);
    let plain = cipher(key)
        .decrypt(
            nonce,
            AeadPayload {
                msg: &bytes[1 + NONCE_LEN..],
                aad: text.as_bytes(),
            },
        )
        .map_err(|_| Rejected::Forged)?;
    let payload: Payload = serde_json::from_slice(&plain).map_err(|_| Rejected::WrongContent)?;
    if payload.k != key.kind as u8 as char {
        return Err(Rejected::WrongContent);
    }
    let value = match (key.kind, payload.v) {
        (Kind::Introspection, Body::I(intro)) => {
            Value::Introspection(Arc::new(TokenInfo::new(*intro)))
        }
        (Kind::Groups, Body::G(g)) => Value::Groups(Arc::new(GroupList::new(g))),
        (Kind::DependentTokens, Body::D(t)) => Value::DependentTokens(Arc::new(t)),
        _ => return Err(Rejected::WrongContent),
    };
    let now_ms = unix_ms();
    if payload.e <= now_ms {
        return Ok(None);
    }
    let now = Moment::now();
    let age = Duration::from_millis(now_ms.saturating_sub(payload.f));
    let entry = Entry {
        fetched_at: now.checked_sub(age).unwrap_or(now),
        expires_at: now + Duration::from_millis(payload.e - now_ms),
        identities: IdentityFilter(payload.b),
        value,
    };
    Ok(Some((entry, payload.q)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::keys::KeyHasher;

    fn entry() -> Entry {
        let intro = Introspection {
            active: true,
            sub: Some("sub-id".into()),
            username: Some("someone@example.org".into()),
            identity_set: Some(vec!["sub-id".into(), "other-id".into()].into()),
            extra: Some(r#"{"iss":"https://auth.example.org"}"#.into()),
            ..Default::default()
        };
        Entry::new(
            Value::Introspection(Arc::new(TokenInfo::new(intro))),
            Duration::from_secs(30),
            IdentityFilter::of(["sub-id", "other-id"]),
        )
    }

    #[test]
    fn round_trip_and_rejections() {
        let hasher = KeyHasher::new("c", "s", "u");
        let key = CacheKey::new(Kind::Introspection, hasher.token_id("the-token"));
        let text = key.to_text("p:");
        // Measured before the entry is built: under Miri sealing alone takes seconds.
        let t0 = Moment::now();
        let sealed = seal(&key, &text, &entry(), Duration::from_secs(60));
        let shown = String::from_utf8_lossy(&sealed);
        for secret in ["the-token", "sub-id", "other-id", "someone"] {
            assert!(!shown.contains(secret) && !text.contains(secret));
        }
        let opened = open(&key, &text, &sealed).unwrap().unwrap();
        assert!(
            matches!(&opened.value, Value::Introspection(i) if i.sub().as_deref() == Some("sub-id")
                && i.extra() == Some(r#"{"iss":"https://auth.example.org"}"#))
        );
        assert_eq!(
            opened.identities,
            IdentityFilter::of(["sub-id", "other-id"])
        );
        assert!(opened.expires_at > t0 + Duration::from_secs(29));

        // Altered anywhere.
        for i in [0, 5, 30, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(open(&key, &text, &bad).is_err());
        }
        // Copied to another token's key, or to another kind's key.
        let other = CacheKey::new(Kind::Introspection, hasher.token_id("another"));
        assert_eq!(
            open(&other, &other.to_text("p:"), &sealed).unwrap_err(),
            Rejected::Forged
        );
        let groups = CacheKey::new(Kind::Groups, key.id);
        assert!(open(&groups, &groups.to_text("p:"), &sealed).is_err());
        // Same key under another prefix (another deployment).
        assert!(open(&key, &key.to_text("q:"), &sealed).is_err());
        // Other credentials.
        let other_creds = KeyHasher::new("c", "s2", "u");
        let k2 = CacheKey::new(Kind::Introspection, other_creds.token_id("the-token"));
        assert!(open(&k2, &text, &sealed).is_err());
        assert_eq!(
            open(&key, &text, b"garbage").unwrap_err(),
            Rejected::Malformed
        );
    }
}
