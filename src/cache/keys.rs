//! Cache keys: a keyed BLAKE3 hash of the token, never the token itself.
//!
//! The hashing key is derived from the client credentials and the authorization server's URL, so
//! two services (or two authorization servers) never read each other's entries, and a fleet of
//! processes with the same credentials computes the same keys for a shared backend.

use std::fmt::Write;

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

/// The 32-byte keyed hash of one token.
pub type TokenId = [u8; 32];

/// One cache entry's key: what it holds and for which token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheKey {
    pub kind: Kind,
    pub id: TokenId,
}

impl CacheKey {
    pub fn new(kind: Kind, id: TokenId) -> Self {
        CacheKey { kind, id }
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

/// The id is already a keyed hash, uniform and unpredictable to anyone without the client
/// credentials: its first eight bytes are a perfectly good hash, with no need to hash it again.
impl std::hash::Hash for CacheKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.id[..8]);
        state.write_u64(u64::from_le_bytes(head) ^ self.kind as u64);
    }
}

/// A `BuildHasher` for maps keyed by [`CacheKey`]: takes the key's own hash as it is.
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
}

impl KeyHasher {
    pub fn new(client_id: &str, client_secret: &str, auth_url: &str) -> Self {
        let mut material = Vec::new();
        for part in [client_id, client_secret, auth_url] {
            material.extend_from_slice(&(part.len() as u64).to_le_bytes());
            material.extend_from_slice(part.as_bytes());
        }
        KeyHasher {
            key: blake3::derive_key("tokenchecker 2026-11 cache key v1", &material),
        }
    }

    #[inline]
    pub fn token_id(&self, token: &str) -> TokenId {
        *blake3::keyed_hash(&self.key, token.as_bytes()).as_bytes()
    }

    /// The backend key of an identity's index (the tokens of that identity a shared backend
    /// holds): a keyed hash, so a dump shows no identity, and each service has its own.
    pub fn identity_index_text(&self, prefix: &str, identity: &str) -> String {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(b"identity index\0");
        hasher.update(identity.as_bytes());
        format!("{prefix}x:{}", hex(hasher.finalize().as_bytes()))
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
        let hex: String = a
            .token_id("tok")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!text.contains(&hex), "the backend key must not show the id");
    }
}
