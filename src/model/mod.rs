//! The data every layer shares: what a token is ([`TokenInfo`]), its groups ([`GroupList`], and
//! the same kept beside its cached answer: [`GroupsHint`]),
//! Globus Auth's answers ([`Introspection`], [`DependentToken`]), the identity filter that lets a
//! purge by identity find cache entries ([`IdentityFilter`]), and where an answer came from
//! ([`Source`]).
//!
//! The model depends on nothing but the JSON rendering helpers and the clock, so the arrows
//! between modules run one way: `ffi` → `checker` → `cache` / `introspection` / `auth_state` → `model`.

mod answer_fields;
mod answers;
mod group_list;
mod identity_filter;
mod source;
mod token_info;

pub use answer_fields::{tc_fields, tc_str, tc_str_list};
pub use answers::{DependentToken, Introspection};
pub use group_list::{GroupList, GroupsHint};
pub use identity_filter::IdentityFilter;
pub use source::Source;
pub use token_info::{TokenInfo, GROUP_PREFIX, IDENTITY_PREFIX};
