//! Sealed shared-cache entries (src/cache/sealing.rs): what `sealing::open` makes of bytes read
//! from Redis or Memcached.
//!
//! The first input byte picks the mode (bit 0), the key's kind (bits 1-6, modulo 3:
//! introspection, groups, dependent tokens) and whether the entry also goes through the
//! in-process layer (bit 7):
//! * bit 0 clear: the rest is opened as stored bytes. Without the sealing key nothing can be
//!   forged, so this checks that garbage of any length and shape is refused without a panic;
//! * bit 0 set: the rest is a *plaintext*, sealed under the right key exactly as the library
//!   does (a copy of its key derivation, checked against `sealing::seal` at start-up), then
//!   opened. This reaches the payload decoding, which no attacker can reach without the key, but
//!   which a buggy or older writer in the fleet could.
//!
//! Never a panic; a refusal is `Malformed`/`Forged`/`WrongContent`; an opened entry is of the
//! key's kind, not yet expired, survives `seal` → `open` unchanged, renders a JSON result
//! document, and (mode byte ≥ 0x80) goes in and out of the in-process layer.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use libfuzzer_sys::fuzz_target;
use tokenchecker::{AuthState, GroupList, Groups, TokenInfo};
use tokenchecker::internals::cache::memory::MemoryLayer;
use tokenchecker::internals::cache::sealing::{open, seal, Rejected};
use tokenchecker::internals::cache::{CacheKey, Entry, KeyHasher, Kind, Value};
use tokenchecker::internals::clock::Moment;
use tokenchecker::model::IdentityFilter;
use tokenchecker::{Introspection, Source};

/// Must equal `SEAL_CONTEXT` in src/cache/sealing.rs (checked in `setup`).
const SEAL_CONTEXT: &str = "tokenchecker 2026-11 shared cache entry seal v1";
const PREFIX: &str = "tc:";

struct Setup {
    keys: [(CacheKey, String); 3],
    layer: MemoryLayer,
}

fn cipher(key: &CacheKey) -> XChaCha20Poly1305 {
    let mut material = [0u8; 33];
    material[0] = key.kind as u8;
    material[1..].copy_from_slice(&key.id);
    XChaCha20Poly1305::new((&blake3::derive_key(SEAL_CONTEXT, &material)).into())
}

/// Seals `plain` for `key` as the library does: 0x02 ‖ nonce ‖ ciphertext ‖ tag, AAD = key text.
fn seal_plaintext(key: &CacheKey, text: &str, plain: &[u8]) -> Vec<u8> {
    let nonce = [7u8; 24];
    let sealed = cipher(key)
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: text.as_bytes(),
            },
        )
        .unwrap();
    let mut out = vec![2u8];
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let hasher = KeyHasher::new("test-client", "test-secret", "http://127.0.0.1:9");
        let id = hasher.token_id("tok-valid");
        let keys = Kind::ALL.map(|kind| {
            let key = CacheKey::new(kind, id);
            let text = key.to_text(PREFIX);
            (key, text)
        });
        // The copy of the key derivation above must still be the library's.
        let (key, text) = &keys[1];
        let entry = Entry::new(
            Value::Groups(Arc::new(GroupList::new(["g"]))),
            Duration::from_secs(60),
            IdentityFilter::of(["i"]),
        );
        let sealed = seal(key, text, &entry, Duration::from_secs(60));
        let plain = cipher(key)
            .decrypt(
                XNonce::from_slice(&sealed[1..25]),
                Payload { msg: &sealed[25..], aad: text.as_bytes() },
            )
            .expect("fuzz/fuzz_targets/sealed_entry.rs: the copy of the sealing key derivation is out of date");
        let resealed = seal_plaintext(key, text, &plain);
        assert!(matches!(open(key, text, &resealed), Ok(Some(_))));
        Setup { keys, layer: MemoryLayer::new(1000, Duration::from_secs(30)) }
    })
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Introspection(x), Value::Introspection(y)) => x == y,
        (Value::Groups(x), Value::Groups(y)) => x == y,
        (Value::DependentTokens(x), Value::DependentTokens(y)) => x == y,
        _ => false,
    }
}

fn check_opened(key: &CacheKey, text: &str, entry: Entry, layer: Option<&MemoryLayer>) {
    let now = Moment::now();
    assert!(
        Some(entry.expires_at) > now.checked_sub(Duration::from_millis(50)),
        "an expired entry opened"
    );
    assert!(
        entry.fetched_at <= now + Duration::from_millis(50),
        "fetched in the future"
    );
    match (&entry.value, key.kind) {
        (Value::Introspection(info), Kind::Introspection) => {
            // The rendered result must stay a JSON document whatever the entry holds.
            let info: Arc<TokenInfo> = info.clone();
            let intro: Introspection = info.to_introspection();
            let state = AuthState {
                info: info.clone(),
                groups: Groups::NotFetched,
                source: Source::Redis,
                age: now.saturating_duration_since(entry.fetched_at),
            };
            let doc = state.to_json(None);
            let back: serde_json::Value = serde_json::from_str(&doc)
                .unwrap_or_else(|e| panic!("the result document is not JSON ({e}): {doc}"));
            assert_eq!(back["exp"], serde_json::json!(intro.exp));
        }
        (Value::Groups(_), Kind::Groups) | (Value::DependentTokens(_), Kind::DependentTokens) => {}
        (v, k) => panic!("a {k:?} key opened a {v:?}"),
    }
    // Sealed again and opened, it is the same entry.
    let left = entry.expires_at.saturating_duration_since(Moment::now());
    let resealed = seal(key, text, &entry, Duration::from_secs(3600));
    match open(key, text, &resealed) {
        Ok(Some(again)) => {
            assert!(
                same_value(&entry.value, &again.value),
                "changed by seal → open"
            );
            assert_eq!(entry.identities, again.identities);
            assert!(
                again.expires_at
                    <= Moment::now()
                        + left.min(Duration::from_secs(3600))
                        + Duration::from_millis(5)
            );
        }
        Ok(None) => assert!(
            left < Duration::from_secs(1),
            "a live entry expired by seal → open"
        ),
        Err(e) => panic!("a resealed entry does not open: {e:?}"),
    }
    // Through the in-process layer (a near cache holds what the backend gave); slower, so
    // only for inputs whose mode byte has its top bit set.
    let Some(layer) = layer else {
        return;
    };
    layer.put(key.local(), entry.clone());
    if let Some(got) = layer.get(&key.local()) {
        assert!(same_value(&got.value, &entry.value));
        assert!(got.expires_at <= Moment::now() + Duration::from_secs(31));
    }
    layer.remove(&key.local());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let s = setup();
    let (key, text) = &s.keys[((mode as usize >> 1) & 0x3f) % 3];
    let bytes = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        seal_plaintext(key, text, rest)
    };
    match open(key, text, &bytes) {
        Ok(Some(entry)) => check_opened(key, text, entry, (mode & 0x80 != 0).then_some(&s.layer)),
        Ok(None) => {}
        Err(Rejected::Malformed | Rejected::Forged) => {
            // Only raw bytes can fail to open: what was sealed with the right key always does.
            assert_eq!(mode & 1, 0, "a properly sealed value failed the seal");
        }
        Err(Rejected::WrongContent) => assert_eq!(mode & 1, 1, "unsealed bytes got past the seal"),
    }
});
