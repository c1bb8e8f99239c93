//! An answer's fields laid out for C (`tc_fields`): every string as a pointer and a
//! length, every list as an array of them, so that bindings read an answer without a JSON
//! parser. Built once per answer, on first request, and kept with it.
#![allow(non_camel_case_types)]

use std::borrow::Cow;
use std::ffi::c_char;
use std::ptr;

use serde::Deserialize;

/// A UTF-8 string, borrowed, not NUL-terminated: `len` bytes at `ptr`. `ptr` is NULL for an
/// absent value (JSON `null`), and then `len` is 0.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tc_str {
    pub ptr: *const c_char,
    pub len: usize,
}

/// A list of strings, borrowed: `len` items at `items` (`items` may be NULL when `len` is 0).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tc_str_list {
    pub items: *const tc_str,
    pub len: usize,
}

/// The fields of an answer (the members of `tc_answer_text`'s document), decoded: strings are
/// unescaped UTF-8. Borrowed from the answer (valid while it lives; never free any part).
#[repr(C)]
#[derive(Debug)]
pub struct tc_fields {
    /// The token is active (an inactive answer has every other field absent or empty).
    pub active: bool,
    /// The answer carried an `identity_set` (an active token without one stands for no identity).
    pub has_identity_set: bool,
    pub has_exp: bool,
    pub has_nbf: bool,
    pub has_iat: bool,
    /// Unix seconds, meaningful with `has_exp`, `has_nbf`, `has_iat`.
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    /// The identity id the token was issued to (`urn:globus:auth:identity:` + `sub` is the
    /// effective identity).
    pub sub: tc_str,
    pub username: tc_str,
    pub name: tc_str,
    pub email: tc_str,
    pub client_id: tc_str,
    /// The identity set's ids, in the server's order (each is a principal with the prefix
    /// `urn:globus:auth:identity:`).
    pub identities: tc_str_list,
    pub scopes: tc_str_list,
    pub aud: tc_str_list,
}

/// The view and what it points into besides the answer's text.
pub struct AnswerFields {
    pub view: tc_fields,
    _items: Box<[tc_str]>,
    _owned: Box<[Box<str>]>,
}

// The pointers point into the answer's text and into `_items`/`_owned`, all immutable and
// owned by the answer (or by this value, kept with it).
unsafe impl Send for AnswerFields {}
unsafe impl Sync for AnswerFields {}

#[derive(Deserialize)]
struct Rendered<'a> {
    active: bool,
    #[serde(borrow)]
    sub: Option<Cow<'a, str>>,
    #[serde(borrow)]
    identities: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    username: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    email: Option<Cow<'a, str>>,
    #[serde(borrow)]
    client_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    scopes: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    aud: Vec<Cow<'a, str>>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
}

impl AnswerFields {
    /// Decodes `text` (the answer's stable document, which must outlive the result and never
    /// move: the answer's heap text). `has_identity_set` comes from the answer's flags.
    pub(super) fn decode(text: &str, has_identity_set: bool) -> AnswerFields {
        // The text was rendered by this crate: it always parses.
        let r: Rendered<'_> = serde_json::from_str(text).expect("a rendered answer parses back");
        let mut owned: Vec<Box<str>> = Vec::new();
        // Unescaped strings point into the text; escaped ones into `owned` (a boxed str's bytes
        // do not move when the vector grows).
        let mut place = |s: Cow<'_, str>| -> tc_str {
            let s: &str = match s {
                Cow::Borrowed(b) => b,
                Cow::Owned(o) => {
                    owned.push(o.into_boxed_str());
                    let b = owned.last().expect("just pushed");
                    // SAFETY: the box's heap bytes live as long as `owned`, kept in the result.
                    unsafe { &*(&**b as *const str) }
                }
            };
            tc_str {
                ptr: s.as_ptr().cast(),
                len: s.len(),
            }
        };
        let opt = |s: Option<Cow<'_, str>>, place: &mut dyn FnMut(Cow<'_, str>) -> tc_str| {
            s.map_or(
                tc_str {
                    ptr: ptr::null(),
                    len: 0,
                },
                place,
            )
        };
        let sub = opt(r.sub, &mut place);
        let username = opt(r.username, &mut place);
        let name = opt(r.name, &mut place);
        let email = opt(r.email, &mut place);
        let client_id = opt(r.client_id, &mut place);
        let counts = [r.identities.len(), r.scopes.len(), r.aud.len()];
        let items: Box<[tc_str]> = r
            .identities
            .into_iter()
            .chain(r.scopes)
            .chain(r.aud)
            .map(&mut place)
            .collect();
        let list = |start: usize, len: usize| tc_str_list {
            items: if len == 0 {
                ptr::null()
            } else {
                items[start..].as_ptr()
            },
            len,
        };
        let view = tc_fields {
            active: r.active,
            has_identity_set,
            has_exp: r.exp.is_some(),
            has_nbf: r.nbf.is_some(),
            has_iat: r.iat.is_some(),
            exp: r.exp.unwrap_or(0),
            nbf: r.nbf.unwrap_or(0),
            iat: r.iat.unwrap_or(0),
            sub,
            username,
            name,
            email,
            client_id,
            identities: list(0, counts[0]),
            scopes: list(counts[0], counts[1]),
            aud: list(counts[0] + counts[1], counts[2]),
        };
        AnswerFields {
            view,
            _items: items,
            _owned: owned.into_boxed_slice(),
        }
    }
}

impl tc_str {
    /// The string (None for an absent value).
    ///
    /// # Safety
    /// `self` must come from a live [`AnswerFields`].
    pub unsafe fn as_str<'a>(&self) -> Option<&'a str> {
        (!self.ptr.is_null()).then(|| {
            std::str::from_utf8_unchecked(std::slice::from_raw_parts(self.ptr.cast(), self.len))
        })
    }
}

impl tc_str_list {
    /// The strings.
    ///
    /// # Safety
    /// `self` must come from a live [`AnswerFields`].
    pub unsafe fn to_vec(&self) -> Vec<String> {
        if self.len == 0 {
            return Vec::new();
        }
        std::slice::from_raw_parts(self.items, self.len)
            .iter()
            .map(|s| s.as_str().unwrap_or_default().to_owned())
            .collect()
    }
}
