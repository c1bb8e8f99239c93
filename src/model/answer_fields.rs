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

/// The view and what it points into besides the answer's text. The storage is held by raw
/// pointers (freed on drop), not boxes: moving a box would invalidate the pointers into it.
pub struct AnswerFields {
    pub view: tc_fields,
    items: *mut [tc_str],
    owned: Vec<*mut str>,
}

impl Drop for AnswerFields {
    fn drop(&mut self) {
        // SAFETY: both came from `Box::into_raw` in `decode` and are freed once, here.
        unsafe {
            drop(Box::from_raw(self.items));
            for s in self.owned.drain(..) {
                drop(Box::from_raw(s));
            }
        }
    }
}

// The pointers point into the answer's text and into `_items`/`_owned`, all immutable and
// owned by the answer (or by this value, kept with it).
unsafe impl Send for AnswerFields {}
unsafe impl Sync for AnswerFields {}

/// A string of the rendered text: borrowed when it holds no escape (serde's own `Cow` always
/// copies inside an `Option` or a `Vec`).
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct Rendered<'a> {
    active: bool,
    #[serde(borrow)]
    sub: Option<Str<'a>>,
    #[serde(borrow)]
    identities: Vec<Str<'a>>,
    #[serde(borrow)]
    username: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<Str<'a>>,
    #[serde(borrow)]
    email: Option<Str<'a>>,
    #[serde(borrow)]
    client_id: Option<Str<'a>>,
    #[serde(borrow)]
    scopes: Vec<Str<'a>>,
    #[serde(borrow)]
    aud: Vec<Str<'a>>,
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
        let mut owned: Vec<*mut str> = Vec::new();
        // Unescaped strings point into the text; escaped ones into strings of their own, kept
        // (as raw pointers) until the result is dropped.
        let mut place = |Str(s): Str<'_>| -> tc_str {
            let (ptr, len) = match s {
                Cow::Borrowed(b) => (b.as_ptr(), b.len()),
                Cow::Owned(o) => {
                    let len = o.len();
                    let raw = Box::into_raw(o.into_boxed_str());
                    owned.push(raw);
                    (raw as *const u8, len)
                }
            };
            tc_str {
                ptr: ptr.cast(),
                len,
            }
        };
        let opt = |s: Option<Str<'_>>, place: &mut dyn FnMut(Str<'_>) -> tc_str| {
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
        let items = Box::into_raw(items);
        let list = |start: usize, len: usize| tc_str_list {
            items: if len == 0 {
                ptr::null()
            } else {
                // SAFETY: `start + len` is within the slice of every item.
                unsafe { (items as *const tc_str).add(start) }
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
        AnswerFields { view, items, owned }
    }
}

impl tc_str {
    /// The string (None for an absent value).
    ///
    /// # Safety
    /// `self` must come from a live `AnswerFields` (an answer that lives).
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
    /// `self` must come from a live `AnswerFields` (an answer that lives).
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

#[cfg(test)]
mod tests {
    use crate::model::{Introspection, TokenInfo};

    #[test]
    fn fields_point_into_the_text_or_hold_the_unescaped_strings() {
        let info = TokenInfo::new(Introspection {
            active: true,
            sub: Some("s-1".into()),
            name: Some("Q\"uote \\ é\n".into()),
            scopes: vec!["a".into(), "b\"".into()],
            aud: vec![],
            exp: Some(10),
            identity_set: Some(vec!["s-1".into(), "s-2".into()].into()),
            ..Default::default()
        });
        let f = info.fields_view();
        // SAFETY: `f` is borrowed from `info`, alive here.
        unsafe {
            assert!(f.active && f.has_identity_set && f.has_exp && !f.has_nbf);
            assert_eq!(f.exp, 10);
            assert_eq!(f.sub.as_str(), Some("s-1"));
            assert_eq!(f.name.as_str(), Some("Q\"uote \\ é\n"));
            assert_eq!(f.username.as_str(), None);
            assert!(f.username.ptr.is_null() && f.username.len == 0);
            assert_eq!(f.identities.to_vec(), ["s-1", "s-2"]);
            assert_eq!(f.scopes.to_vec(), ["a", "b\""]);
            assert!(f.aud.items.is_null() && f.aud.to_vec().is_empty());
            // An unescaped string points into the answer's own text.
            let text = info.stable_text().as_bytes().as_ptr_range();
            assert!(text.contains(&f.sub.ptr.cast()));
        }
        // Built once: the same view every time.
        assert!(std::ptr::eq(f, info.fields_view()));
    }
}
