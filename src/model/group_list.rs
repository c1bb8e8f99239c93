//! A caller's group memberships as cached: one rendered JSON list.

use std::fmt;

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
}
