//! A caller's group memberships as cached: one rendered JSON list; and the same kept beside
//! the caller's cached answer, with the last authorization they decided.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::clock::Moment;
use crate::json::{push_json_str, RenderedList};

/// A caller's group ids, held as their rendered JSON list (one allocation).
#[derive(Clone, PartialEq, Eq)]
pub struct GroupList {
    /// `"id1","id2",…` (escaped, no brackets).
    text: Box<str>,
    len: u32,
    /// Some id holds an escape.
    escaped: bool,
}

impl GroupList {
    pub fn new<S: AsRef<str>>(ids: impl IntoIterator<Item = S>) -> GroupList {
        let mut text = String::new();
        let mut len = 0u32;
        for id in ids {
            if len > 0 {
                text.push(',');
            }
            push_json_str(&mut text, "", id.as_ref());
            len += 1;
        }
        GroupList {
            escaped: text.contains('\\'),
            text: text.into_boxed_str(),
            len,
        }
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The group ids, decoded.
    pub fn to_vec(&self) -> Vec<String> {
        self.list().to_vec()
    }

    pub fn contains(&self, group: &str) -> bool {
        self.list().contains(group)
    }

    /// The ids as rendered.
    pub(crate) fn list(&self) -> RenderedList<'_> {
        RenderedList::new(&self.text, self.escaped)
    }
}

/// A caller's groups kept beside its cached answer ([`super::TokenInfo::groups_hint`]), so
/// that a cached authorization by group takes one lookup, not two, and a compiled policy they
/// authorized before reads neither the identities nor the groups again.
///
/// Only the in-process layer that holds the answer keeps them, from its own groups entry and
/// until that entry's expiry; every purge removes a token's answer with its groups, so they
/// never say more than the layer would. Kept once per answer: past their expiry the groups
/// are looked up again (and the answer itself is usually due by then).
pub struct GroupsHint {
    pub groups: Arc<GroupList>,
    expires_at: Moment,
    /// The last compiled policy these groups (with the answer) authorized:
    /// `policy memo id << INDEX_BITS | matched index + 1` (0: none).
    last_match: AtomicU64,
}

/// Bits of `last_match` for the matched index (+ 1); a policy's memo id has the rest.
const INDEX_BITS: u32 = 24;

impl GroupsHint {
    pub fn new(groups: &Arc<GroupList>, expires_at: Moment) -> GroupsHint {
        GroupsHint {
            groups: groups.clone(),
            expires_at,
            last_match: AtomicU64::new(0),
        }
    }

    #[inline]
    pub fn fresh_at(&self, now: Moment) -> bool {
        self.expires_at > now
    }

    /// The index a policy with this memo id (see [`Self::remember`]) matched, when it was the
    /// last one these groups authorized.
    #[inline]
    pub fn remembered(&self, memo_id: u64) -> Option<u32> {
        let last = self.last_match.load(Ordering::Relaxed);
        if memo_id == 0 || last >> INDEX_BITS != memo_id {
            return None;
        }
        Some((last & ((1 << INDEX_BITS) - 1)) as u32 - 1)
    }

    /// Remembers that a policy (by its memo id: unique for the process's life, never reused,
    /// below 2^40; 0 for none) matched at `index` with these groups and this answer.
    pub fn remember(&self, memo_id: u64, index: u32) {
        let index = u64::from(index) + 1;
        if memo_id != 0 && memo_id < 1 << (64 - INDEX_BITS) && index < 1 << INDEX_BITS {
            self.last_match
                .store(memo_id << INDEX_BITS | index, Ordering::Relaxed);
        }
    }
}

impl fmt::Debug for GroupList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.list().items()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_lists_keep_their_ids() {
        let ids = ["g1", "q\"uote\\", ""];
        let groups = GroupList::new(ids);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups.to_vec(), ids);
        assert!(ids.iter().all(|g| groups.contains(g)));
        assert!(!groups.contains("g2"));
        assert!(GroupList::new(Vec::<String>::new()).is_empty());
        assert_eq!(format!("{groups:?}"), r#"["g1", "q\\\"uote\\\\", ""]"#);
    }

    #[test]
    fn kept_groups_remember_the_last_policy_they_authorized() {
        let hint = GroupsHint::new(&Arc::new(GroupList::new(["g1"])), Moment::now());
        assert!(!hint.fresh_at(Moment::now()));
        assert_eq!(hint.remembered(7), None);
        hint.remember(7, 0);
        assert_eq!((hint.remembered(7), hint.remembered(8)), (Some(0), None));
        hint.remember(8, 41);
        assert_eq!((hint.remembered(7), hint.remembered(8)), (None, Some(41)));
        // Policies without a memo id, or past its bits, are never remembered.
        hint.remember(0, 1);
        hint.remember(1 << 40, 1);
        hint.remember(9, 1 << 24);
        assert_eq!((hint.remembered(0), hint.remembered(8)), (None, Some(41)));
    }
}
