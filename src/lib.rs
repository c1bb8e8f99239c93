//! tokenchecker: OAuth2 bearer-token checking for Globus resource servers.
//!
//! A [`Checker`] introspects tokens with Globus Auth, applies the expected scopes and audience,
//! learns the caller's identities and (through a dependent token and the Groups API) groups,
//! and caches what it learned in one process-wide cache. The C ABI in [`ffi`] exposes the same.

pub mod auth_state;
pub mod cache;
pub mod checker;
pub mod config;
pub mod ffi;
pub mod introspection;
pub mod json;
pub mod log;
pub mod runtime;
pub mod stale;
pub mod stats;
pub mod status;
pub mod token_info;

pub use auth_state::{AuthState, AuthorizeRequest, Groups};
pub use checker::{Authorization, Checker};
pub use config::Config;
pub use introspection::DependentToken;
pub use status::{tc_status, Error, Status};
pub use token_info::{GroupList, TokenInfo};

/// The C ABI's generation (see `tc_abi_version`); build.rs writes it into the header too.
pub const ABI_VERSION: u32 = 2;

/// The library's version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
