//! Cache keys: keyed hashes of the token, never the token itself.
//!
//! Two of them. The in-process layers key on a fast keyed PRF (SipHash-1-3, 128-bit output)
//! under a key drawn at random for each process and mixed with the service's own key: the hot
//! path hashes a token once, in a few tens of nanoseconds. Shared backends key on a keyed BLAKE3
//! hash, whose key is derived from the client credentials and the authorization server's URL, so
//! a fleet of processes with the same credentials computes the same keys, and two services (or
//! two authorization servers) never read each other's entries. The BLAKE3 id is computed only
//! where a backend or a seal needs it (a miss, a purge), never on a hit.

use std::fmt::Write;
use std::hash::Hasher as _;

use once_cell::sync::Lazy;
use siphasher::sip128::{Hasher128, SipHasher13};

const BACKEND_KEY_CONTEXT: &str = "tokenchecker 2026-11 shared cache backend key v1";

/// What an entry holds about a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    Introspection = b'i',
    Groups = b'g',
    DependentTokens = b'd',
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Introspection, Kind::Groups, Kind::DependentTokens];
}

/// The 32-byte keyed BLAKE3 hash of one token: its name in shared backends and seals.
pub type TokenId = [u8; 32];

/// The 16-byte in-process keyed hash of one token (SipHash-1-3-128, per-process key).
pub type LocalId = [u8; 16];

/// Both hashes of one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenIds {
    pub shared: TokenId,
    pub local: LocalId,
}

/// For tests, benchmarks and fuzzing: ids from a given shared id (the local one is its head).
impl From<TokenId> for TokenIds {
    fn from(shared: TokenId) -> TokenIds {
        let mut local = [0u8; 16];
        local.copy_from_slice(&shared[..16]);
        TokenIds { shared, local }
    }
}

/// One cache entry's key: what it holds and for which token. Two keys are equal when their
/// kinds and local ids are (the shared id is a function of the same token).
#[derive(Debug, Clone, Copy)]
pub struct CacheKey {
    pub kind: Kind,
    /// The shared backends' id.
    pub id: TokenId,
    pub local: LocalId,
}

/// The key of an in-process entry: what it holds and the token's local id (17 bytes: this is
/// what each in-process cache slot keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalKey {
    pub kind: Kind,
    pub local: LocalId,
}

impl LocalKey {
    #[inline]
    pub fn new(kind: Kind, local: LocalId) -> Self {
        LocalKey { kind, local }
    }
}

/// The local id is already a keyed hash, uniform and unpredictable without the process's key:
/// its first eight bytes are a perfectly good hash, with no need to hash it again.
impl std::hash::Hash for LocalKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.local[..8]);
        state.write_u64(u64::from_le_bytes(head) ^ self.kind as u64);
    }
}

impl PartialEq for CacheKey {
    fn eq(&self, other: &CacheKey) -> bool {
        self.local() == other.local()
    }
}

impl Eq for CacheKey {}

impl std::hash::Hash for CacheKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.local().hash(state)
    }
}

impl CacheKey {
    pub fn new(kind: Kind, ids: impl Into<TokenIds>) -> Self {
        let ids = ids.into();
        CacheKey {
            kind,
            id: ids.shared,
            local: ids.local,
        }
    }

    /// The in-process part of the key.
    #[inline]
    pub fn local(&self) -> LocalKey {
        LocalKey::new(self.kind, self.local)
    }

    /// The key's text form for shared backends: `<prefix><kind>:<64 hex digits>`, the digits
    /// being a one-way hash of the id, so that a reader of the backend cannot learn the id (from
    /// which the entry's sealing key is derived, see [`super::sealing`]).
    pub fn to_text(&self, prefix: &str) -> String {
        let mut s = String::with_capacity(prefix.len() + 66);
        s.push_str(prefix);
        s.push(self.kind as u8 as char);
        s.push(':');
        s.push_str(&self.public_id());
        s
    }

    /// The part of the backend key that names the token (64 hex digits): a one-way function of
    /// the token's id, so the backend never learns the id (from which seals are derived).
    pub fn public_id(&self) -> String {
        hex(&blake3::derive_key(BACKEND_KEY_CONTEXT, &self.id))
    }

    /// The backend key of the token named by `public_id` ([`Self::public_id`]), for `kind`.
    pub fn text_of(prefix: &str, kind: Kind, public_id: &str) -> String {
        format!("{prefix}{}:{public_id}", kind as u8 as char)
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A `BuildHasher` for maps keyed by [`LocalKey`] or [`CacheKey`]: takes the key's own hash as
/// it is.
#[derive(Clone, Copy, Default)]
pub struct IdHash;

/// The hasher of [`IdHash`].
#[derive(Default)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    /// Other keys (not used) still hash, FNV-1a style.
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

impl std::hash::BuildHasher for IdHash {
    type Hasher = IdHasher;
    #[inline]
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0xcbf2_9ce4_8422_2325)
    }
}

/// Hashes tokens with a key derived from one client's credentials.
#[derive(Clone)]
pub struct KeyHasher {
    key: [u8; 32],
    /// The SipHash key of the local ids: this process's random key mixed with `key`.
    local_key: (u64, u64),
}

/// Drawn once per process: local ids mean nothing outside it.
static PROCESS_KEY: Lazy<[u8; 32]> = Lazy::new(|| {
    use chacha20poly1305::aead::rand_core::RngCore;
    let mut k = [0u8; 32];
    chacha20poly1305::aead::OsRng.fill_bytes(&mut k);
    k
});

/// Draws the process key now rather than on first use.
pub fn warm_up() {
    Lazy::force(&PROCESS_KEY);
}

impl KeyHasher {
    pub fn new(client_id: &str, client_secret: &str, auth_url: &str) -> Self {
        let mut material = Vec::new();
        for part in [client_id, client_secret, auth_url] {
            material.extend_from_slice(&(part.len() as u64).to_le_bytes());
            material.extend_from_slice(part.as_bytes());
        }
        let key = blake3::derive_key("tokenchecker 2026-11 cache key v1", &material);
        let mixed = blake3::keyed_hash(&PROCESS_KEY, &key);
        let half = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&mixed.as_bytes()[i..i + 8]);
            u64::from_le_bytes(b)
        };
        KeyHasher {
            key,
            local_key: (half(0), half(8)),
        }
    }

    /// Both ids of a token: the shared one (BLAKE3) and the local one (SipHash).
    #[inline]
    pub fn token_id(&self, token: &str) -> TokenIds {
        TokenIds {
            shared: *blake3::keyed_hash(&self.key, token.as_bytes()).as_bytes(),
            local: self.local_id(token),
        }
    }

    /// The in-process id of a token: SipHash-1-3 with a 128-bit output (the hot path).
    #[inline]
    pub fn local_id(&self, token: &str) -> LocalId {
        let mut h = SipHasher13::new_with_keys(self.local_key.0, self.local_key.1);
        h.write(token.as_bytes());
        h.finish128().as_bytes()
    }

    /// The backend key of an identity's purge tombstone (see `purges`): a keyed hash, so a
    /// dump shows no identity, and each service has its own.
    pub fn identity_tombstone_text(&self, prefix: &str, identity: &str) -> String {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(b"identity tombstone\0");
        hasher.update(identity.as_bytes());
        format!("{prefix}purged:i:{}", hex(hasher.finalize().as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_credentials_and_never_show_the_token() {
        let a = KeyHasher::new("c", "s", "u");
        let b = KeyHasher::new("c", "s2", "u");
        assert_ne!(a.token_id("tok"), b.token_id("tok"));
        assert_eq!(a.token_id("tok"), a.token_id("tok"));
        let text = CacheKey::new(Kind::Groups, a.token_id("tok")).to_text("p:");
        assert!(text.starts_with("p:g:"));
        assert_eq!(text.len(), 4 + 64);
        assert!(!text.contains("tok"));
        let ids = a.token_id("tok");
        for id in [&ids.shared[..], &ids.local[..]] {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            assert!(
                !text.contains(&hex),
                "the backend key must not show the ids"
            );
        }
        // Local ids are this process's own, and differ per service too.
        assert_eq!(a.local_id("tok"), ids.local);
        assert_ne!(a.local_id("tok"), b.local_id("tok"));
        assert_ne!(a.local_id("tok"), a.local_id("tok2"));
    }
}
