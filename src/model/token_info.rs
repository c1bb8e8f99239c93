//! What a token is, held compactly: one rendered JSON text is the only copy of its strings.
//!
//! The cache holds one [`TokenInfo`] per token (and one [`GroupList`] per token whose groups were
//! fetched), so their size is the cache's size. The fixed part of the result document is
//! rendered once, when the answer arrives; the rules of a check (scopes, audience, identities)
//! read the same text through a few offsets, comparing escaped forms (see [`crate::json`]); the
//! effective identity and the principals, which repeat the subject and the identities, are
//! written out on each check rather than stored. The structured answer ([`Introspection`]) is
//! decoded from the text only where it is needed whole (sealing for a shared backend, the CLI).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use once_cell::race::OnceBox;

use serde::Deserialize;

use super::answer_fields::{tc_fields, AnswerFields};
use super::{GroupList, GroupsHint, IdentityFilter, Introspection};
use crate::clock::Moment;
use crate::json::{push_json_str, push_opt_i64, push_opt_str, unescape, RenderedList};

pub const IDENTITY_PREFIX: &str = "urn:globus:auth:identity:";
pub const GROUP_PREFIX: &str = "urn:globus:groups:id:";

const EFFECTIVE_IDENTITY: &str = ",\"effective_identity\":";
const PRINCIPALS: &str = ",\"principals\":[";

const ACTIVE: u8 = 1;
const HAS_IDENTITY_SET: u8 = 2;
const HAS_EXP: u8 = 4;
const HAS_NBF: u8 = 8;
/// Some string in the text holds an escape (otherwise strings compare byte for byte).
const ESCAPED: u8 = 16;
/// What ends the rendered text: the closing brace of the stable document, and a NUL for C.
const STABLE_END: &str = "}\0";

/// The next answer id (see [`TokenInfo::answer_id`]); ids start at 1 and are never reused.
static NEXT_ANSWER_ID: AtomicU64 = AtomicU64::new(1);

/// A byte range of the rendered text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn of(text: &str, start: usize) -> Span {
        // The answer's size is bounded by the response size limit, far below 4 GiB.
        Span {
            start: start as u32,
            end: text.len() as u32,
        }
    }

    #[inline]
    fn get(self, text: &str) -> &str {
        &text[self.start as usize..self.end as usize]
    }

    fn len(self) -> usize {
        (self.end - self.start) as usize
    }
}

/// An introspection answer, as the fixed part of its result document plus what a check needs
/// to find in it.
///
/// `text` is `{"active":…,"sub":…,"identities":[…],"username":…,"name":…,"email":…,
/// "client_id":…,"scopes":[…],"aud":[…],"exp":…,"nbf":…,"iat":…}` and a NUL: the stable
/// document of the C ABI's answer handle ([`Self::stable_text`]); the result document is that
/// text without its end, with the per-check members after it.
// `repr(C)`, what every cached check reads first (after the reference counts): a hit touches
// one or two of its cache lines, not three (it showed at 100k cached tokens).
#[repr(C)]
pub struct TokenInfo {
    /// The `rules_id` of the last configuration whose scope, audience and identity rules this
    /// answer passed (0: none): a hit of the same checker then checks only the clock.
    rules_passed: AtomicU64,
    /// Meaningful with `HAS_EXP`, `HAS_NBF` (an `Option` would take twice the room).
    exp: i64,
    nbf: i64,
    identity_count: u32,
    flags: u8,
    /// Unique to this answer in this process (a clone keeps it: same answer, same text).
    id: u64,
    /// The fields laid out for C, built on first request (`tc_answer_fields`).
    decoded: OnceBox<AnswerFields>,
    /// The caller's groups, kept beside this answer ([`Self::groups_hint`]).
    groups_hint: OnceBox<GroupsHint>,
    text: Box<str>,
    /// The subject's value (`"…"` or `null`).
    sub: Span,
    /// Inside the brackets of each list.
    identities: Span,
    scopes: Span,
    aud: Span,
    /// The members of the server's answer this crate does not read (`{"iss":…,…}`), kept for
    /// those who want the answer whole ([`Self::introspection_json`]).
    extra: Option<Box<str>>,
}

impl TokenInfo {
    pub fn new(intro: Introspection) -> TokenInfo {
        let ids: &[String] = intro.identity_set.as_deref().unwrap_or(&[]);
        let mut t = String::with_capacity(256);
        t.push_str(if intro.active {
            "{\"active\":true,\"sub\":"
        } else {
            "{\"active\":false,\"sub\":"
        });
        let start = t.len();
        push_opt_str(&mut t, intro.sub.as_deref());
        let sub = Span::of(&t, start);
        t.push_str(",\"identities\":[");
        let identities = push_items(&mut t, ids);
        for (key, value) in [
            (",\"username\":", &intro.username),
            (",\"name\":", &intro.name),
            (",\"email\":", &intro.email),
            (",\"client_id\":", &intro.client_id),
        ] {
            t.push_str(key);
            push_opt_str(&mut t, value.as_deref());
        }
        t.push_str(",\"scopes\":[");
        let scopes = push_items(&mut t, &intro.scopes);
        t.push_str(",\"aud\":[");
        let aud = push_items(&mut t, &intro.aud);
        for (key, value) in [
            (",\"exp\":", intro.exp),
            (",\"nbf\":", intro.nbf),
            (",\"iat\":", intro.iat),
        ] {
            t.push_str(key);
            push_opt_i64(&mut t, value);
        }
        let mut flags = 0;
        if intro.active {
            flags |= ACTIVE;
        }
        if intro.identity_set.is_some() {
            flags |= HAS_IDENTITY_SET;
        }
        if intro.exp.is_some() {
            flags |= HAS_EXP;
        }
        if intro.nbf.is_some() {
            flags |= HAS_NBF;
        }
        if t.contains('\\') {
            flags |= ESCAPED;
        }
        t.push_str(STABLE_END);
        TokenInfo {
            text: t.into_boxed_str(),
            id: NEXT_ANSWER_ID.fetch_add(1, Ordering::Relaxed),
            rules_passed: AtomicU64::new(0),
            exp: intro.exp.unwrap_or(0),
            nbf: intro.nbf.unwrap_or(0),
            sub,
            identities,
            scopes,
            aud,
            identity_count: ids.len() as u32,
            flags,
            extra: intro.extra,
            decoded: OnceBox::new(),
            groups_hint: OnceBox::new(),
        }
    }

    /// The caller's groups kept beside this answer, unless past their expiry (see
    /// [`GroupsHint`]).
    #[inline]
    pub fn groups_hint(&self, now: Moment) -> Option<&GroupsHint> {
        self.groups_hint.get().filter(|hint| hint.fresh_at(now))
    }

    /// Keeps the caller's groups beside this answer until `expires_at` (their entry's expiry),
    /// when none were kept yet.
    pub fn keep_groups(&self, groups: &Arc<GroupList>, expires_at: Moment) {
        let _ = self
            .groups_hint
            .get_or_init(|| Box::new(GroupsHint::new(groups, expires_at)));
    }

    /// The fields laid out for C, borrowed from this answer (decoded once, on first request).
    pub fn fields_view(&self) -> &tc_fields {
        &self
            .decoded
            .get_or_init(|| {
                Box::new(AnswerFields::decode(
                    self.stable_text(),
                    self.has_identity_set(),
                ))
            })
            .view
    }

    /// The members of the server's answer this crate does not read, as a JSON object's text.
    pub fn extra(&self) -> Option<&str> {
        self.extra.as_deref()
    }

    /// The introspection answer in the server's shape (see [`Introspection::server_json`]).
    pub fn introspection_json(&self) -> String {
        self.to_introspection().server_json()
    }

    pub fn active(&self) -> bool {
        self.flags & ACTIVE != 0
    }

    pub fn exp(&self) -> Option<i64> {
        (self.flags & HAS_EXP != 0).then_some(self.exp)
    }

    pub fn nbf(&self) -> Option<i64> {
        (self.flags & HAS_NBF != 0).then_some(self.nbf)
    }

    /// Whether the answer carried an `identity_set` (an answer without one fails the check).
    pub fn has_identity_set(&self) -> bool {
        self.flags & HAS_IDENTITY_SET != 0
    }

    pub fn sub(&self) -> Option<String> {
        let v = self.sub.get(&self.text);
        (v != "null").then(|| unescape(&v[1..v.len() - 1]).into_owned())
    }

    /// `urn:globus:auth:identity:<sub>`.
    pub fn effective_identity(&self) -> Option<String> {
        self.sub().map(|s| format!("{IDENTITY_PREFIX}{s}"))
    }

    pub fn identity_count(&self) -> usize {
        self.identity_count as usize
    }

    /// The identity set (empty without one).
    pub fn identities(&self) -> Vec<String> {
        self.identity_list().to_vec()
    }

    #[inline]
    fn list(&self, span: Span) -> RenderedList<'_> {
        RenderedList::new(span.get(&self.text), self.flags & ESCAPED != 0)
    }

    /// The identity set as rendered.
    pub(crate) fn identity_list(&self) -> RenderedList<'_> {
        self.list(self.identities)
    }

    pub fn has_identity(&self, identity: &str) -> bool {
        self.identity_list().contains(identity)
    }

    /// The token's scopes.
    pub fn scopes(&self) -> Vec<String> {
        self.list(self.scopes).to_vec()
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.list(self.scopes).contains(scope)
    }

    pub fn has_audience(&self, audience: &str) -> bool {
        self.list(self.aud).contains(audience)
    }

    /// Which identities this token's cache entries belong to.
    pub fn identity_filter(&self) -> IdentityFilter {
        IdentityFilter::of(self.identity_list().items().map(unescape))
    }

    /// The answer as the authorization server gave it (the fields this crate reads), decoded.
    pub fn to_introspection(&self) -> Introspection {
        #[derive(Deserialize)]
        struct Fields {
            active: bool,
            sub: Option<String>,
            identities: Vec<String>,
            username: Option<String>,
            name: Option<String>,
            email: Option<String>,
            client_id: Option<String>,
            scopes: Vec<String>,
            aud: Vec<String>,
            exp: Option<i64>,
            nbf: Option<i64>,
            iat: Option<i64>,
        }
        // The text was rendered from an `Introspection`: it always parses back.
        let f: Fields =
            serde_json::from_str(self.stable_text()).expect("a rendered answer parses back");
        Introspection {
            active: f.active,
            scopes: f.scopes,
            sub: f.sub,
            username: f.username,
            name: f.name,
            email: f.email,
            aud: f.aud,
            client_id: f.client_id,
            exp: f.exp,
            nbf: f.nbf,
            iat: f.iat,
            identity_set: self.has_identity_set().then(|| f.identities.into()),
            extra: self.extra.clone(),
        }
    }

    /// The stable document: `{"active":…,…,"iat":…}` (see the type's documentation), the same
    /// text for every hit of this answer.
    #[inline]
    pub fn stable_text(&self) -> &str {
        &self.text[..self.text.len() - 1]
    }

    /// [`Self::stable_text`] as a NUL-terminated C string (its bytes are followed by the text's
    /// NUL, the only one it holds: every string in it is JSON-escaped), valid while `self` lives.
    #[inline]
    pub fn stable_c_ptr(&self) -> *const std::ffi::c_char {
        debug_assert_eq!(
            self.text.bytes().position(|b| b == 0),
            Some(self.text.len() - 1)
        );
        self.text.as_ptr().cast()
    }

    /// A number unique to this answer for the life of the process, never reused: bindings key
    /// what they decoded from [`Self::stable_text`] by it.
    #[inline]
    pub fn answer_id(&self) -> u64 {
        self.id
    }

    /// Whether this answer passed the scope, audience and identity rules of configuration
    /// `rules_id` (they depend on nothing but the answer and the configuration).
    #[inline]
    pub fn passed_rules(&self, rules_id: u64) -> bool {
        rules_id != 0 && self.rules_passed.load(Ordering::Relaxed) == rules_id
    }

    pub fn mark_passed_rules(&self, rules_id: u64) {
        if rules_id != 0 {
            self.rules_passed.store(rules_id, Ordering::Relaxed);
        }
    }

    /// The rendered fields, without the stable document's end.
    #[inline]
    fn fields(&self) -> &str {
        &self.text[..self.text.len() - STABLE_END.len()]
    }

    /// The length of what [`Self::write_head`] writes.
    #[inline]
    pub fn head_len(&self) -> usize {
        let effective = if self.has_sub() {
            self.sub.len() + IDENTITY_PREFIX.len()
        } else {
            "null".len()
        };
        self.fields().len()
            + EFFECTIVE_IDENTITY.len()
            + effective
            + PRINCIPALS.len()
            + self.identities.len()
            + self.identity_count() * (IDENTITY_PREFIX.len())
    }

    #[inline]
    fn has_sub(&self) -> bool {
        self.text.as_bytes()[self.sub.start as usize] == b'"'
    }

    /// The result document up to and including the identity principals: the rendered text with
    /// the effective identity after the subject, then `,"principals":[` and one principal per
    /// identity (the group principals and the rest follow).
    #[inline]
    pub fn write_head(&self, out: &mut Vec<u8>) {
        let text = self.fields().as_bytes();
        let sub_end = self.sub.end as usize;
        out.extend_from_slice(&text[..sub_end]);
        out.extend_from_slice(EFFECTIVE_IDENTITY.as_bytes());
        if self.has_sub() {
            out.push(b'"');
            out.extend_from_slice(IDENTITY_PREFIX.as_bytes());
            // The subject's escaped text and its closing quote.
            out.extend_from_slice(&text[self.sub.start as usize + 1..sub_end]);
        } else {
            out.extend_from_slice(b"null");
        }
        out.extend_from_slice(&text[sub_end..]);
        out.extend_from_slice(PRINCIPALS.as_bytes());
        for (n, id) in self.identity_list().items().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(IDENTITY_PREFIX.as_bytes());
            out.extend_from_slice(id.as_bytes());
            out.push(b'"');
        }
    }
}

/// Renders `items` as the inside of a list, then the closing bracket; returns the inside's span.
fn push_items(t: &mut String, items: &[String]) -> Span {
    let start = t.len();
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            t.push(',');
        }
        push_json_str(t, "", item);
    }
    let span = Span::of(t, start);
    t.push(']');
    span
}

impl Clone for TokenInfo {
    fn clone(&self) -> TokenInfo {
        TokenInfo {
            text: self.text.clone(),
            id: self.id,
            rules_passed: AtomicU64::new(self.rules_passed.load(Ordering::Relaxed)),
            exp: self.exp,
            nbf: self.nbf,
            sub: self.sub,
            identities: self.identities,
            scopes: self.scopes,
            aud: self.aud,
            identity_count: self.identity_count,
            flags: self.flags,
            extra: self.extra.clone(),
            decoded: OnceBox::new(),
            groups_hint: OnceBox::new(),
        }
    }
}

/// Equal answers: the same text (the id tells two fetches of the same answer apart, and does not
/// count here).
impl PartialEq for TokenInfo {
    fn eq(&self, other: &TokenInfo) -> bool {
        self.text == other.text
            && self.exp == other.exp
            && self.nbf == other.nbf
            && self.sub == other.sub
            && self.identities == other.identities
            && self.scopes == other.scopes
            && self.aud == other.aud
            && self.identity_count == other.identity_count
            && self.flags == other.flags
            && self.extra == other.extra
    }
}

impl Eq for TokenInfo {}

impl fmt::Debug for TokenInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenInfo")
            .field("text", &self.text)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use std::sync::Arc;

    /// The fixed part of the result document as serde renders it: the reference.
    #[derive(Serialize)]
    struct Reference<'a> {
        active: bool,
        sub: Option<&'a str>,
        effective_identity: Option<String>,
        identities: &'a [String],
        username: Option<&'a str>,
        name: Option<&'a str>,
        email: Option<&'a str>,
        client_id: Option<&'a str>,
        scopes: &'a [String],
        aud: &'a [String],
        exp: Option<i64>,
        nbf: Option<i64>,
        iat: Option<i64>,
        principals: Vec<String>,
    }

    fn answers() -> Vec<Introspection> {
        let s = |v: &str| Some(v.to_string());
        let odd = "q\"uote\\ \u{1} é,\"";
        vec![
            Introspection::default(),
            Introspection {
                active: true,
                scopes: vec!["a".into(), "openid".into()],
                sub: s("i1"),
                username: s("someone@example.org"),
                aud: vec!["c".into()],
                client_id: s("c"),
                exp: Some(1_000),
                nbf: Some(-5),
                iat: Some(0),
                identity_set: Some(vec!["i1".into(), "i2".into()].into()),
                ..Default::default()
            },
            Introspection {
                active: true,
                scopes: vec![odd.into()],
                sub: s(odd),
                name: s(odd),
                email: s("e"),
                aud: vec![odd.into(), "x".into()],
                identity_set: Some(vec![odd.into(), "\\".into()].into()),
                exp: Some(i64::MAX),
                ..Default::default()
            },
            Introspection {
                active: true,
                identity_set: Some(Arc::from([])),
                ..Default::default()
            },
        ]
    }

    #[test]
    fn renders_what_serde_renders_and_reads_back_what_it_was_given() {
        for intro in answers() {
            let info = TokenInfo::new(intro.clone());
            let ids = intro.identity_set.as_deref().unwrap_or(&[]);
            let reference = Reference {
                active: intro.active,
                sub: intro.sub.as_deref(),
                effective_identity: intro.sub.as_ref().map(|s| format!("{IDENTITY_PREFIX}{s}")),
                identities: ids,
                username: intro.username.as_deref(),
                name: intro.name.as_deref(),
                email: intro.email.as_deref(),
                client_id: intro.client_id.as_deref(),
                scopes: &intro.scopes,
                aud: &intro.aud,
                exp: intro.exp,
                nbf: intro.nbf,
                iat: intro.iat,
                principals: ids
                    .iter()
                    .map(|i| format!("{IDENTITY_PREFIX}{i}"))
                    .collect(),
            };
            let mut want = serde_json::to_string(&reference).unwrap();
            want.truncate(want.len() - 2); // the list stays open for the group principals
            let mut head = Vec::new();
            info.write_head(&mut head);
            assert_eq!(String::from_utf8(head).unwrap(), want);
            assert_eq!(info.head_len(), want.len());

            assert_eq!(info.to_introspection(), intro);
            assert_eq!(info.sub(), intro.sub);
            assert_eq!(info.identities(), ids);
            assert_eq!(info.identity_count(), ids.len());
            assert_eq!(info.active(), intro.active);
            assert_eq!((info.exp(), info.nbf()), (intro.exp, intro.nbf));
            assert_eq!(info.has_identity_set(), intro.identity_set.is_some());
            for id in ids {
                assert!(info.has_identity(id));
                assert!(info.identity_filter().may_contain(id));
            }
            for s in &intro.scopes {
                assert!(info.has_scope(s));
                assert!(!info.has_scope(&format!("{s}\"")));
            }
            for a in &intro.aud {
                assert!(info.has_audience(a));
            }
            assert!(!info.has_audience("nobody") && !info.has_identity("nobody"));
        }
    }

    #[test]
    fn what_the_cache_holds_per_token_stays_small() {
        // `TokenInfo` is one allocation (plus its text's): 136 bytes with its reference counts
        // (the answer id and the last rules passed took 16; the server's other members, the C
        // layout built on request and the groups kept beside it, 32), a 144-byte heap chunk:
        // a 160-byte one made a cached check at 100k tokens 1.7x slower. An `Entry` sits in
        // its cache slot (two per token): see the cache's own test of its size.
        assert!(std::mem::size_of::<TokenInfo>() <= 120);
    }
}
