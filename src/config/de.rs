//! How the configuration's JSON is read: objects into `#[derive(Deserialize)]` structs, one part
//! at a time, and values into small types that check their shape and say what they expect.
//!
//! * Every error names the key path (`cache_config.redis_expiration_time`, through
//!   `serde_path_to_error`) and what the key must be. serde's own messages are never shown: they
//!   quote the value, which may be a secret (`"client_secret": 12345`) or megabytes long. What a
//!   message shows of the caller's text goes through [`clip`].
//! * An object is read in parts (the top level, `cache_config`'s head, the settings Redis and
//!   Memcached share, the backend's own keys): [`read`] hands a struct only the keys it declares,
//!   and [`reject_unknown`] then names every key that no part took, as the hand-written reader
//!   did. This is how the shared backend settings are declared once without `#[serde(flatten)]`
//!   (which cannot be combined with `deny_unknown_fields`, and loses the key path of errors).
//!   The structs still say `deny_unknown_fields`, so that none of them is lenient when read whole.

use std::time::Duration;

use serde::de::value::{MapDeserializer, StrDeserializer};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use serde_path_to_error::Segment;

use crate::status::clip;
use crate::status::Error;

/// Reads the keys of `obj` that `T` declares into a `T` (the others are left to other parts and
/// to [`reject_unknown`]). Errors name the key path below `prefix` (`""` or `"cache_config."`).
pub(super) fn read<'a, T: Deserialize<'a>>(
    obj: &'a Map<String, Value>,
    prefix: &str,
) -> Result<T, Error> {
    let keys = keys_of::<T>();
    let entries = obj
        .iter()
        .filter(|(k, _)| keys.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v));
    serde_path_to_error::deserialize(MapDeserializer::<_, serde_json::Error>::new(entries)).map_err(
        |e| {
            let path = e
                .path()
                .iter()
                .filter_map(|s| match s {
                    Segment::Map { key } => Some(clip(key)),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(".");
            let why = e.into_inner().to_string();
            // The value types below word their errors as the rest of a sentence that starts with
            // the key (" must be …", ": … is not …"). Anything else came from serde itself, which
            // the parts never let happen (every field is optional, only declared keys are passed,
            // every value type accepts any JSON); it would quote the value, so it is not shown.
            if why.starts_with([' ', ':']) {
                Error::invalid_config(format!("config key '{prefix}{path}'{why}"))
            } else {
                Error::invalid_config(format!("config key '{prefix}{path}' is not valid"))
            }
        },
    )
}

/// The keys a derived struct accepts (its fields' names and aliases): serde_derive hands them to
/// `Deserializer::deserialize_struct`, which this deserializer only records.
pub(super) fn keys_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Fields<'f>(&'f mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Fields<'_> {
        type Error = de::value::Error;

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("only the field names were asked for"))
        }

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut fields));
    fields
}

/// Refuses the keys of `obj` that none of the `known` lists names: "unknown config key 'a', 'b'"
/// (at most five, sorted, each clipped).
pub(super) fn reject_unknown(
    obj: &Map<String, Value>,
    prefix: &str,
    known: &[&[&str]],
) -> Result<(), Error> {
    let mut unknown: Vec<&str> = obj
        .keys()
        .map(String::as_str)
        .filter(|k| !known.iter().any(|list| list.contains(k)))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort_unstable();
    let list = unknown
        .iter()
        .take(5)
        .map(|k| format!("'{prefix}{}'", clip(k)))
        .collect::<Vec<_>>()
        .join(", ");
    Err(Error::invalid_config(format!("unknown config key {list}")))
}

/// One JSON value as the value types below see it: lists are kept (they hold the host/port pairs
/// and scopes), objects only noted.
pub(super) enum Json {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(String),
    List(Vec<Json>),
    Object,
}

impl Json {
    fn as_f64(&self) -> Option<f64> {
        match *self {
            Json::U64(n) => Some(n as f64),
            Json::I64(n) => Some(n as f64),
            Json::F64(n) => Some(n),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct JsonVisitor;

        impl<'de> Visitor<'de> for JsonVisitor {
            type Value = Json;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_none<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
                Ok(Json::Bool(b))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Json, E> {
                Ok(Json::U64(n))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Json, E> {
                Ok(Json::I64(n))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Json, E> {
                Ok(Json::F64(n))
            }
            fn visit_str<E>(self, s: &str) -> Result<Json, E> {
                Ok(Json::Str(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Json, E> {
                Ok(Json::Str(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::List(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Json::Object)
            }
        }

        d.deserialize_any(JsonVisitor)
    }
}

/// Reads a value as [`Json`] and lets `check` turn it into a `T`, or into the rest of the
/// sentence that names the key (" must be …").
pub(super) fn leaf<'de, D: Deserializer<'de>, T>(
    d: D,
    check: impl FnOnce(Json) -> Result<T, String>,
) -> Result<T, D::Error> {
    check(Json::deserialize(d)?).map_err(de::Error::custom)
}

/// A string.
pub(super) struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        leaf(d, |v| match v {
            Json::Str(s) => Ok(Text(s)),
            _ => Err(" must be a string".into()),
        })
    }
}

/// `true` or `false`.
pub(super) struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        leaf(d, |v| match v {
            Json::Bool(b) => Ok(Flag(b)),
            _ => Err(" must be true or false".into()),
        })
    }
}

/// A whole number from `MIN` to `MAX`.
pub(super) struct Whole<const MIN: u64, const MAX: u64>(pub u64);

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Whole<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        leaf(d, |v| match v {
            Json::U64(n) if (MIN..=MAX).contains(&n) => Ok(Whole(n)),
            _ => Err(format!(" must be a whole number from {MIN} to {MAX}")),
        })
    }
}

/// A number of seconds (fractions allowed) from 0 to 30 days.
#[derive(Clone, Copy)]
pub(super) struct Seconds(pub Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        leaf(d, |v| match v.as_f64() {
            Some(s) if s.is_finite() && (0.0..=2_592_000.0).contains(&s) => {
                Ok(Seconds(Duration::from_secs_f64(s)))
            }
            Some(_) => Err(" must be a number of seconds from 0 to 2592000".into()),
            None => Err(" must be a number of seconds (not a string)".into()),
        })
    }
}

/// A list of non-empty strings (trimmed); a single space-separated string is accepted too.
pub(super) struct Words(pub Vec<String>);

impl<'de> Deserialize<'de> for Words {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        leaf(d, |v| match v {
            Json::Str(s) => Ok(Words(s.split_whitespace().map(String::from).collect())),
            Json::List(items) => items
                .into_iter()
                .map(|item| match item {
                    Json::Str(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                    _ => Err(" must be a list of non-empty strings".to_string()),
                })
                .collect::<Result<_, _>>()
                .map(Words),
            _ => Err(" must be a list of strings".into()),
        })
    }
}

/// An `http://` or `https://` URL with a host and no user, query or fragment, without its
/// trailing slashes.
pub(super) struct HttpUrl(pub String);

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        leaf(d, |v| {
            let Json::Str(text) = v else {
                return Err(" must be a string".into());
            };
            let parsed = reqwest::Url::parse(&text)
                .map_err(|e| format!(" must be an http:// or https:// URL ({e})"))?;
            let host_ok = parsed.host_str().is_some_and(|h| !h.is_empty());
            // The text itself is what requests are built from: it must say `http://` or
            // `https://` (the URL parser forgives `http:host`, `http:./host`, `HTTP://`, …).
            let prefix_ok = text.starts_with("http://") || text.starts_with("https://");
            if !prefix_ok
                || !matches!(parsed.scheme(), "http" | "https")
                || !host_ok
                || parsed.query().is_some()
                || parsed.fragment().is_some()
                || !parsed.username().is_empty()
                || parsed.password().is_some()
            {
                return Err(
                    " must be an http:// or https:// URL with a host and no user, \
                            query or fragment"
                        .into(),
                );
            }
            Ok(HttpUrl(text.trim_end_matches('/').to_string()))
        })
    }
}

/// The names a string-valued key accepts: `T` is a unit-variant enum deriving `Deserialize`
/// (each variant's `rename`, and `alias`es for dogpile's names); `EXPECTED` lists them for the
/// message when the value is none of them.
pub(super) trait Choices: for<'de> Deserialize<'de> {
    const EXPECTED: &'static str;
}

/// One of `T`'s names.
pub(super) struct Choice<T>(pub T);

impl<'de, T: Choices> Deserialize<'de> for Choice<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        leaf(d, |v| {
            let Json::Str(s) = v else {
                return Err(" must be a string".into());
            };
            let name: StrDeserializer<de::value::Error> = StrDeserializer::new(&s);
            T::deserialize(name).map(Choice).map_err(|_| {
                format!(
                    " has an unknown value {:?}; expected {}",
                    clip(&s),
                    T::EXPECTED
                )
            })
        })
    }
}

/// A value that may also be `null` on purpose (absent: [`Nullable::Absent`], through
/// `#[serde(default)]`).
#[derive(Default)]
pub(super) enum Nullable {
    #[default]
    Absent,
    Null,
    Text(String),
}

impl<'de> Deserialize<'de> for Nullable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        leaf(d, |v| match v {
            Json::Null => Ok(Nullable::Null),
            Json::Str(s) => Ok(Nullable::Text(s)),
            _ => Err(" must be a string or null".into()),
        })
    }
}

/// A string, or a list of strings.
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A Redis Cluster's `url`: one seed URL or a list of them.
pub(super) struct SeedUrls(pub Vec<String>);

impl<'de> Deserialize<'de> for SeedUrls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        leaf(d, |v| match one_or_many(v) {
            Some(OneOrMany::One(s)) => Ok(SeedUrls(vec![s])),
            Some(OneOrMany::Many(list)) => Ok(SeedUrls(list)),
            None => Err(" must be a seed URL or a list of seed URLs".into()),
        })
    }
}

/// A string or a list of strings; `None` for anything else.
pub(super) fn one_or_many(v: Json) -> Option<OneOrMany> {
    match v {
        Json::Str(s) => Some(OneOrMany::One(s)),
        Json::List(items) => items
            .into_iter()
            .map(|item| match item {
                Json::Str(s) => Some(s),
                _ => None,
            })
            .collect::<Option<_>>()
            .map(OneOrMany::Many),
        _ => None,
    }
}

/// One Redis server's `url`: a string (a list is several seeds, which need `"cluster": true`).
pub(super) struct SingleUrl(pub String);

impl<'de> Deserialize<'de> for SingleUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        leaf(d, |v| match v {
            Json::Str(s) => Ok(SingleUrl(s)),
            Json::List(_) => Err(concat!(
                " is a list: several seed URLs need \"cluster\": true (a Redis Cluster); for ",
                "Sentinel use the redis_sentinel backend and 'sentinels'"
            )
            .into()),
            _ => Err(" must be a string".into()),
        })
    }
}

/// The most cluster seeds or sentinels a configuration may name.
pub(super) const MAX_REDIS_SERVERS: usize = 100;

/// A non-empty list of servers, each `[host, port]` or `"host:port"` (`startup_nodes`,
/// `sentinels`).
pub(super) struct HostPorts(pub Vec<(String, u16)>);

impl<'de> Deserialize<'de> for HostPorts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        leaf(d, host_port_list).map(HostPorts)
    }
}

fn host_port_list(v: Json) -> Result<Vec<(String, u16)>, String> {
    let bad = || " must be a list of [host, port] pairs or \"host:port\" strings".to_string();
    let Json::List(items) = v else {
        return Err(bad());
    };
    if items.is_empty() || items.len() > MAX_REDIS_SERVERS {
        return Err(format!(
            " must name at least one server and at most {MAX_REDIS_SERVERS}"
        ));
    }
    let sane_host = |h: &str| {
        !h.is_empty()
            && h.len() <= 255
            && !h
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b"/@?#".contains(&b))
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let (host, port) = match item {
            Json::List(pair) => match <[Json; 2]>::try_from(pair) {
                Ok([Json::Str(h), Json::U64(p)]) => (h, p),
                _ => return Err(bad()),
            },
            Json::Str(s) => match s.rsplit_once(':') {
                Some((h, p)) => (
                    h.trim_start_matches('[').trim_end_matches(']').to_string(),
                    p.parse::<u64>().map_err(|_| bad())?,
                ),
                None => return Err(bad()),
            },
            _ => return Err(bad()),
        };
        if !sane_host(&host) || !(1..=65535).contains(&port) {
            return Err(format!(
                ": {:?} is not a host and a port from 1 to 65535",
                clip(&format!("{host}:{port}"))
            ));
        }
        out.push((host, port as u16));
    }
    Ok(out)
}
