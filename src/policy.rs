//! A compiled authorization policy: the allowed principals of `tc_authorize`'s request, parsed
//! once and reused (`tc_policy_new`), so that a cached authorization parses, renders and
//! allocates nothing per call.
//!
//! The rules are the original `check_authorization`'s, in its order: `public` (with
//! `allow_public`), then `all_authenticated_users` (with `allow_all_authenticated_users`, for a
//! token that stands for an identity), then the first of the caller's identities (in the
//! identity set's order) an allowed principal names, and groups only when nothing cheaper
//! matched (the first of the caller's groups, in the Groups API's order). A match is the index
//! of the allowed principal in the request's list (its first occurrence).

use std::ffi::CString;
use std::sync::atomic::{AtomicU64, Ordering};

use rustc_hash::FxHashMap;

use crate::auth_state::{AuthorizeRequest, ALL_AUTHENTICATED_USERS, PUBLIC};
use crate::json::{unescape, RenderedList};
use crate::model::{GroupList, TokenInfo, GROUP_PREFIX, IDENTITY_PREFIX};
use crate::status::Error;

/// Up to this many ids, a linear scan beats hashing.
const LINEAR_MAX: usize = 4;
/// The next policy's memo id (see [`Policy::memo_id`]); they stop at [`MEMO_IDS`].
static NEXT_MEMO_ID: AtomicU64 = AtomicU64::new(1);
/// How many memo ids there are: past them, policies have none (they are only slower).
const MEMO_IDS: u64 = 1 << 40;

/// The allowed principals, compiled.
#[derive(Debug)]
pub struct Policy {
    /// As given (index = position), NUL-terminated for C.
    principals: Vec<CString>,
    public: Option<u32>,
    all_authenticated_users: Option<u32>,
    identities: Ids,
    groups: Ids,
    memo_id: u64,
}

/// Ids (a principal without its prefix) and the index of the principal naming each first.
#[derive(Debug)]
enum Ids {
    Few(Vec<(Box<str>, u32)>),
    Many(FxHashMap<Box<str>, u32>),
}

impl Ids {
    fn new(ids: Vec<(Box<str>, u32)>) -> Ids {
        if ids.len() <= LINEAR_MAX {
            return Ids::Few(ids);
        }
        let mut map = FxHashMap::default();
        for (id, index) in ids {
            map.entry(id).or_insert(index);
        }
        Ids::Many(map)
    }

    fn is_empty(&self) -> bool {
        match self {
            Ids::Few(v) => v.is_empty(),
            Ids::Many(m) => m.is_empty(),
        }
    }

    #[inline]
    fn get(&self, raw: &str) -> Option<u32> {
        match self {
            Ids::Few(v) => v.iter().find(|(id, _)| &**id == raw).map(|&(_, i)| i),
            Ids::Many(m) => m.get(raw).copied(),
        }
    }

    /// The index for the first item of `list` that one of the ids is.
    #[inline]
    fn first_in(&self, list: RenderedList<'_>) -> Option<u32> {
        if self.is_empty() {
            return None;
        }
        list.items().find_map(|item| {
            if list.is_escaped() {
                self.get(&unescape(item))
            } else {
                self.get(item)
            }
        })
    }
}

impl Policy {
    /// Compiles a request document (`{"allowed_principals": […], "allow_public": …,
    /// "allow_all_authenticated_users": …}`).
    pub fn from_json(text: &str) -> Result<Policy, Error> {
        Policy::new(&AuthorizeRequest::from_json(text)?)
    }

    /// Compiles a request to be kept and reused: the authorizations it makes are remembered
    /// beside the callers' groups (see [`Self::memo_id`]).
    pub fn new(request: &AuthorizeRequest) -> Result<Policy, Error> {
        let mut policy = Policy::once(request)?;
        let id = NEXT_MEMO_ID.fetch_add(1, Ordering::Relaxed);
        policy.memo_id = if id < MEMO_IDS { id } else { 0 };
        Ok(policy)
    }

    /// Compiles a request for one call (`tc_authorize`'s document path): without a memo id.
    pub fn once(request: &AuthorizeRequest) -> Result<Policy, Error> {
        let mut principals = Vec::with_capacity(request.allowed_principals.len());
        let (mut public, mut all_users) = (None, None);
        let (mut identities, mut groups) = (Vec::new(), Vec::new());
        for (i, p) in request.allowed_principals.iter().enumerate() {
            let index = u32::try_from(i)
                .map_err(|_| Error::invalid_argument("too many allowed principals"))?;
            principals.push(CString::new(p.as_bytes()).map_err(|_| {
                Error::invalid_argument(format!("allowed principal {i} contains a NUL character"))
            })?);
            if p == PUBLIC && request.allow_public {
                public.get_or_insert(index);
            } else if p == ALL_AUTHENTICATED_USERS && request.allow_all_authenticated_users {
                all_users.get_or_insert(index);
            } else if let Some(id) = p.strip_prefix(IDENTITY_PREFIX) {
                identities.push((id.into(), index));
            } else if let Some(id) = p.strip_prefix(GROUP_PREFIX) {
                groups.push((id.into(), index));
            }
        }
        Ok(Policy {
            principals,
            public,
            all_authenticated_users: all_users,
            identities: Ids::new(identities),
            groups: Ids::new(groups),
            memo_id: 0,
        })
    }

    /// Unique to this policy for the process's life and never reused (1 up to 2^40; 0 for a
    /// policy compiled for one call, or past them): what [`crate::model::GroupsHint`]
    /// remembers an authorization by.
    #[inline]
    pub fn memo_id(&self) -> u64 {
        self.memo_id
    }

    /// How many principals the request listed.
    pub fn len(&self) -> usize {
        self.principals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.principals.is_empty()
    }

    /// The allowed principal at `index`, as given.
    pub fn principal(&self, index: usize) -> Option<&str> {
        self.principals
            .get(index)
            .map(|p| p.to_str().expect("principals come from UTF-8 text"))
    }

    /// The principal at `index` for C: NUL-terminated, borrowed from the policy.
    pub fn principal_c(&self, index: usize) -> Option<&std::ffi::CStr> {
        self.principals.get(index).map(CString::as_c_str)
    }

    /// Whether a group principal is allowed (only then are groups worth fetching).
    pub fn names_groups(&self) -> bool {
        !self.groups.is_empty()
    }

    /// The principal that allows the caller without groups, if any, in the original's order.
    #[inline]
    pub fn match_without_groups(&self, info: &TokenInfo) -> Option<u32> {
        if self.public.is_some() {
            return self.public;
        }
        if self.all_authenticated_users.is_some() && info.identity_count() > 0 {
            return self.all_authenticated_users;
        }
        self.identities.first_in(info.identity_list())
    }

    /// The first of the caller's groups (in the Groups API's order) an allowed principal names.
    #[inline]
    pub fn match_groups(&self, groups: &GroupList) -> Option<u32> {
        self.groups.first_in(groups.list())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Introspection;

    fn info(ids: &[&str]) -> TokenInfo {
        TokenInfo::new(Introspection {
            active: true,
            exp: Some(i64::MAX / 2),
            identity_set: Some(ids.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        })
    }

    fn policy(principals: &[&str], public: bool, all: bool) -> Policy {
        Policy::new(&AuthorizeRequest {
            allowed_principals: principals.iter().map(|s| s.to_string()).collect(),
            allow_public: public,
            allow_all_authenticated_users: all,
        })
        .unwrap()
    }

    #[test]
    fn matches_in_the_originals_order_and_names_the_first_listing() {
        let id = |s: &str| format!("{IDENTITY_PREFIX}{s}");
        let group = |s: &str| format!("{GROUP_PREFIX}{s}");
        let (b, a, a2, g) = (id("b"), id("a"), id("a"), group("g"));
        let p = policy(&[&b, &a, &a2, &g, PUBLIC], false, false);
        // Identities in the identity set's order: "a" comes first in the token.
        assert_eq!(p.match_without_groups(&info(&["a", "b"])), Some(1));
        assert_eq!(p.match_without_groups(&info(&["x"])), None);
        assert!(p.names_groups());
        assert_eq!(p.match_groups(&GroupList::new(["h", "g"])), Some(3));
        assert_eq!(p.match_groups(&GroupList::new(["h"])), None);
        assert_eq!(p.principal(3), Some(g.as_str()));
        // "public" counts only with allow_public; then it comes first.
        let p = policy(&[&a, PUBLIC, ALL_AUTHENTICATED_USERS], true, true);
        assert_eq!(p.match_without_groups(&info(&["a"])), Some(1));
        let p = policy(&[&a, ALL_AUTHENTICATED_USERS], false, true);
        assert_eq!(p.match_without_groups(&info(&["z"])), Some(1));
        assert_eq!(p.match_without_groups(&info(&[])), None);
        assert!(!p.names_groups());
    }

    #[test]
    fn many_ids_and_escaped_ones_match_alike() {
        let many: Vec<String> = (0..100).map(|i| format!("{GROUP_PREFIX}g{i}")).collect();
        let mut all: Vec<&str> = many.iter().map(String::as_str).collect();
        let quoted = format!("{IDENTITY_PREFIX}q\"uote");
        all.push(&quoted);
        let p = policy(&all, false, false);
        assert_eq!(
            p.match_groups(&GroupList::new(["x", "g57", "g3"])),
            Some(57)
        );
        assert_eq!(p.match_without_groups(&info(&["n", "q\"uote"])), Some(100));
        assert!(Policy::new(&AuthorizeRequest {
            allowed_principals: vec!["a\0b".into()],
            ..Default::default()
        })
        .is_err());
    }
}
