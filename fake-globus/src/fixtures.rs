//! Built-in fixture tokens, identities, groups and clients.
//!
//! These are seeded by [`FakeGlobus::start`](crate::FakeGlobus::start) and by
//! the binary (unless `--no-seed`). The values are stable: C, Go and Node
//! tests hardcode them (see `fake-globus/README.md`).

use serde_json::{json, Value};

/// Client id that is always registered.
pub const CLIENT_ID: &str = "test-client";
/// Secret of [`CLIENT_ID`].
pub const CLIENT_SECRET: &str = "test-secret";

/// Default scope of a token spec without `scope`.
pub const DEFAULT_SCOPE: &str = "urn:globus:auth:scope:test:all openid";
/// Scope of [`TOK_WRONG_SCOPE`].
pub const OTHER_SCOPE: &str = "urn:globus:auth:scope:other:all";
/// Audience of [`TOK_WRONG_AUD`].
pub const OTHER_AUD: &str = "other-client";
/// Scope of the groups dependent token every grant returns.
pub const GROUPS_SCOPE: &str =
    "urn:globus:auth:scope:groups.api.globus.org:view_my_groups_and_memberships";
/// Resource server of the groups dependent token.
pub const GROUPS_RESOURCE_SERVER: &str = "groups.api.globus.org";
/// Scope of the extra transfer dependent token of [`TOK_VALID`] and [`TOK_BOB`].
pub const TRANSFER_SCOPE: &str = "urn:globus:auth:scope:transfer.api.globus.org:all";
/// Resource server of the transfer dependent token.
pub const TRANSFER_RESOURCE_SERVER: &str = "transfer.api.globus.org";
/// `expires_in` of every fixture dependent token.
pub const DEPENDENT_EXPIRES_IN: u64 = 172_800;
/// `iss` of every introspection answer.
pub const ISSUER: &str = "https://auth.globus.org";

/// Identity used when a token spec gives no `identity_set`.
pub const DEFAULT_IDENTITY_ID: &str = "d0000000-0000-4000-8000-000000000000";
/// Username used when a token spec gives no `username`.
pub const DEFAULT_USERNAME: &str = "user@example.org";
/// Name used when a token spec gives no `name`.
pub const DEFAULT_NAME: &str = "Test User";

/// Alice's primary identity (`sub` of [`TOK_VALID`]).
pub const ALICE_ID: &str = "a11ce000-0000-4000-8000-000000000001";
/// Alice's second linked identity.
pub const ALICE_ID2: &str = "a11ce000-0000-4000-8000-000000000002";
/// Alice's username.
pub const ALICE_USERNAME: &str = "alice@example.org";
/// Alice's display name.
pub const ALICE_NAME: &str = "Alice";
/// Alice's email.
pub const ALICE_EMAIL: &str = "alice@example.org";

/// Bob's identity (`sub` of [`TOK_BOB`]).
pub const BOB_ID: &str = "b0b00000-0000-4000-8000-000000000003";
/// Bob's username.
pub const BOB_USERNAME: &str = "bob@example.org";
/// Bob's display name.
pub const BOB_NAME: &str = "Bob";
/// Bob's email.
pub const BOB_EMAIL: &str = "bob@example.org";

/// Group where Alice is an active `member`.
pub const GROUP_MEMBER: &str = "11111111-1111-4111-8111-111111111111";
/// Group where Alice is an active `admin`.
pub const GROUP_ADMIN: &str = "22222222-2222-4222-8222-222222222222";
/// Group where Alice's membership is `pending` (must not count).
pub const GROUP_PENDING: &str = "33333333-3333-4333-8333-333333333333";
/// Name of [`GROUP_MEMBER`].
pub const GROUP_MEMBER_NAME: &str = "Member Group";
/// Name of [`GROUP_ADMIN`].
pub const GROUP_ADMIN_NAME: &str = "Admin Group";
/// Name of [`GROUP_PENDING`].
pub const GROUP_PENDING_NAME: &str = "Pending Group";

/// Alice: active, default scope/aud, two identities, three groups, expires in 1 h.
pub const TOK_VALID: &str = "tok-valid";
/// Bob: active, like [`TOK_VALID`] but identity [`BOB_ID`] and no groups.
pub const TOK_BOB: &str = "tok-bob";
/// Introspects as `{"active": false}`.
pub const TOK_INACTIVE: &str = "tok-inactive";
/// Active, scope [`OTHER_SCOPE`].
pub const TOK_WRONG_SCOPE: &str = "tok-wrong-scope";
/// Active, aud `["other-client"]`.
pub const TOK_WRONG_AUD: &str = "tok-wrong-aud";
/// Active but `exp` is 100 s in the past.
pub const TOK_EXPIRED: &str = "tok-expired";
/// Active but `nbf` is 600 s in the future.
pub const TOK_NOT_YET: &str = "tok-not-yet";
/// Active, answer has no `identity_set` field at all.
pub const TOK_NO_IDENTITIES: &str = "tok-no-identities";
/// Active, `exp` 5 s after each introspection.
pub const TOK_SHORT: &str = "tok-short";

/// Every fixture token name.
pub const ALL_TOKENS: &[&str] = &[
    TOK_VALID,
    TOK_BOB,
    TOK_INACTIVE,
    TOK_WRONG_SCOPE,
    TOK_WRONG_AUD,
    TOK_EXPIRED,
    TOK_NOT_YET,
    TOK_NO_IDENTITIES,
    TOK_SHORT,
];

/// The fixture token specs, as a `POST /_control/tokens` body.
pub fn tokens() -> Value {
    let transfer = json!([{
        "scope": TRANSFER_SCOPE,
        "resource_server": TRANSFER_RESOURCE_SERVER,
        "expires_in": DEPENDENT_EXPIRES_IN,
    }]);
    json!({
        TOK_VALID: {
            "identity_set": [ALICE_ID, ALICE_ID2],
            "sub": ALICE_ID,
            "username": ALICE_USERNAME,
            "name": ALICE_NAME,
            "email": ALICE_EMAIL,
            "exp_in": 3600,
            "groups": [
                {"id": GROUP_MEMBER, "name": GROUP_MEMBER_NAME, "role": "member", "status": "active"},
                {"id": GROUP_ADMIN, "name": GROUP_ADMIN_NAME, "role": "admin", "status": "active"},
                {"id": GROUP_PENDING, "name": GROUP_PENDING_NAME, "role": "member", "status": "pending"},
            ],
            "dependent_tokens": transfer,
        },
        TOK_BOB: {
            "identity_set": [BOB_ID],
            "sub": BOB_ID,
            "username": BOB_USERNAME,
            "name": BOB_NAME,
            "email": BOB_EMAIL,
            "exp_in": 3600,
            "dependent_tokens": transfer,
        },
        TOK_INACTIVE: {"active": false},
        TOK_WRONG_SCOPE: {"scope": OTHER_SCOPE},
        TOK_WRONG_AUD: {"aud": [OTHER_AUD]},
        TOK_EXPIRED: {"exp_in": -100},
        TOK_NOT_YET: {"nbf_in": 600},
        TOK_NO_IDENTITIES: {"omit_identity_set": true},
        TOK_SHORT: {"exp_in": 5},
    })
}
