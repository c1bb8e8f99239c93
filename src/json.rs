//! JSON text on the hot path: escaping and integers without allocating, and reading back the
//! string arrays this crate rendered itself.
//!
//! A cached token keeps its strings only as rendered JSON (see the `model` module's `TokenInfo`), so
//! comparisons happen on escaped text. JSON escaping as serde_json does it is a function
//! (one escaped form per string), so two strings are equal exactly when their escaped forms are.

use std::borrow::Cow;

/// Appends `prefix` + `s` as one JSON string, escaped as serde_json escapes (no allocation).
/// `prefix` must need no escaping.
pub fn push_json_str(out: &mut String, prefix: &str, s: &str) {
    out.push('"');
    out.push_str(prefix);
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        if escaped.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escaped);
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

/// Appends `"s"` (escaped), or `null`.
pub fn push_opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_json_str(out, "", s),
        None => out.push_str("null"),
    }
}

/// Decimal digits without going through `fmt`.
pub fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &d in &buf[i..] {
        out.push(char::from(d));
    }
}

/// A number, or `null`.
pub fn push_opt_i64(out: &mut String, v: Option<i64>) {
    match v {
        None => out.push_str("null"),
        Some(v) => {
            if v < 0 {
                out.push('-');
            }
            push_u64(out, v.unsigned_abs());
        }
    }
}

/// A list of strings this crate rendered: the inside of its brackets (items rendered by
/// [`push_json_str`], joined by commas), and whether any item holds an escape (most lists hold
/// none, and are then compared byte for byte).
#[derive(Clone, Copy, Debug)]
pub struct RenderedList<'a> {
    inside: &'a str,
    escaped: bool,
}

impl<'a> RenderedList<'a> {
    pub fn new(inside: &'a str, escaped: bool) -> Self {
        RenderedList { inside, escaped }
    }

    /// Each item's escaped text, without its quotes.
    #[inline]
    pub fn items(self) -> JsonStrings<'a> {
        JsonStrings {
            rest: self.inside,
            escaped: self.escaped,
        }
    }

    /// Whether `item` (one of [`Self::items`]) is the JSON form of `raw`.
    #[inline]
    pub fn item_is(self, item: &str, raw: &str) -> bool {
        if self.escaped {
            escaped_eq(item, raw)
        } else {
            item == raw
        }
    }

    #[inline]
    pub fn contains(self, raw: &str) -> bool {
        self.items().any(|item| self.item_is(item, raw))
    }

    /// The strings, decoded.
    pub fn to_vec(self) -> Vec<String> {
        self.items().map(|i| unescape(i).into_owned()).collect()
    }

    /// Whether some item may hold an escape (otherwise items are their raw strings).
    #[inline]
    pub fn is_escaped(self) -> bool {
        self.escaped
    }

    /// The inside, as rendered.
    pub fn as_str(self) -> &'a str {
        self.inside
    }
}

/// The items of a string array's inside as rendered by [`push_json_str`] and joined by commas
/// (`"a","b\"c"`): each item's escaped text without its quotes. Only for text this crate
/// rendered (anything else may yield garbage items, never out-of-bounds reads).
#[derive(Clone)]
pub struct JsonStrings<'a> {
    rest: &'a str,
    /// Whether an item may hold an escaped quote (otherwise the next quote closes the item).
    escaped: bool,
}

impl<'a> Iterator for JsonStrings<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.rest.as_bytes();
        if bytes.first() != Some(&b'"') {
            return None;
        }
        // The closing quote: the first one not escaped (preceded by an even run of backslashes).
        let mut from = 1;
        let close = loop {
            let at = from + memchr::memchr(b'"', &bytes[from..])?;
            if !self.escaped {
                break at;
            }
            let backslashes = bytes[from..at]
                .iter()
                .rev()
                .take_while(|&&b| b == b'\\')
                .count();
            if backslashes % 2 == 0 {
                break at;
            }
            from = at + 1;
        };
        let item = &self.rest[1..close];
        let after = close + 1;
        self.rest = match bytes.get(after) {
            Some(b',') => &self.rest[after + 1..],
            _ => &self.rest[after..],
        };
        Some(item)
    }
}

/// Whether the escaped text `escaped` (an item of [`JsonStrings`]) is the JSON form of `raw`.
/// Allocates only when `escaped` holds an escape.
#[inline]
fn escaped_eq(escaped: &str, raw: &str) -> bool {
    if !escaped.as_bytes().contains(&b'\\') {
        // Nothing escaped: the text is the string itself (and `raw`, if equal, needs no escape).
        return escaped == raw;
    }
    unescape(escaped) == raw
}

/// The string an escaped item stands for.
pub fn unescape(escaped: &str) -> Cow<'_, str> {
    if !escaped.as_bytes().contains(&b'\\') {
        return Cow::Borrowed(escaped);
    }
    let quoted = format!("\"{escaped}\"");
    // Text this crate escaped always parses back.
    Cow::Owned(serde_json::from_str(&quoted).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRICKY: [&str; 8] = [
        "",
        "plain",
        "q\"uote\\back/slash",
        "\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}",
        "é ü 漢字 🦀",
        "mixed\u{1}é\"",
        "ends with a backslash\\",
        "\",\"",
    ];

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for s in TRICKY {
            let mut out = String::new();
            push_json_str(&mut out, "", s);
            assert_eq!(out, serde_json::to_string(s).unwrap(), "{s:?}");
            let mut out = String::new();
            push_json_str(&mut out, "urn:x:", s);
            assert_eq!(out, serde_json::to_string(&format!("urn:x:{s}")).unwrap());
        }
        for v in [
            None,
            Some(0),
            Some(-1),
            Some(i64::MIN),
            Some(i64::MAX),
            Some(42),
        ] {
            let mut out = String::new();
            push_opt_i64(&mut out, v);
            assert_eq!(out, serde_json::to_string(&v).unwrap());
        }
    }

    #[test]
    fn rendered_arrays_read_back_item_by_item() {
        for n in 0..TRICKY.len() {
            let items = &TRICKY[..n];
            let mut inside = String::new();
            for (i, s) in items.iter().enumerate() {
                if i > 0 {
                    inside.push(',');
                }
                push_json_str(&mut inside, "", s);
            }
            let read: Vec<&str> = RenderedList::new(&inside, true).items().collect();
            assert_eq!(read.len(), items.len(), "{inside}");
            for (escaped, raw) in read.iter().zip(items) {
                assert_eq!(unescape(escaped), *raw);
                assert!(escaped_eq(escaped, raw));
                assert!(!escaped_eq(escaped, &format!("{raw}x")));
            }
        }
        // Garbage in, no panic.
        for text in ["\"", "\"\\", "x", "\"a\"\"b", "\"\\\"", ","] {
            let _ = RenderedList::new(text, true).items().count();
        }
    }
}
