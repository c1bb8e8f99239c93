"""The upstream package's authentication tests (0.11.3: tests/test_authentication.py and
tests/test_tokenchecker.py), ported from mocks to the real fake Globus server, plus the
scenarios the original handled silently (inactive, expired, scopes, groups failures)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, Type

import pytest

import tokenchecker
from tokenchecker import TokenChecker, errors
from tokenchecker.authentication import AuthState, identity_principal

from conftest import (
    ALICE_ID,
    ALICE_ID2,
    BOB_ID,
    CLIENT_ID,
    CLIENT_SECRET,
    DEFAULT_ID,
    GROUP_ADMIN,
    GROUP_MEMBER,
    GROUP_PENDING,
    SCOPE,
    TRANSFER_SCOPE,
    Fake,
    introspections,
    make_checker,
)

ALICE = {
    "identity_set": [ALICE_ID, ALICE_ID2],
    "sub": ALICE_ID,
    "username": "alice@example.org",
    "name": "Alice",
    "groups": [GROUP_MEMBER, {"id": GROUP_ADMIN, "role": "admin"}, {"id": GROUP_PENDING, "status": "pending"}],
    "dependent_tokens": [{"scope": TRANSFER_SCOPE, "resource_server": "transfer.api.globus.org"}],
}


# ---- test_authentication.py -----------------------------------------------------------------------


def test_token_checker_bad_credentials(fake: Fake) -> None:
    with pytest.raises(errors.ConfigurationError) as info:
        TokenChecker(client_id="bogus", client_secret="bogus", expected_scopes=("fakescope",),
                     auth_url=fake.url, groups_url=fake.url)
    assert isinstance(info.value, tokenchecker.CredentialsRejectedError)
    assert info.value.code == "TC_CREDENTIALS_REJECTED"
    assert "bogus" not in str(info.value)


def test_get_identities(checker: TokenChecker) -> None:
    state = checker.check_token("tok-valid")
    assert isinstance(state, AuthState)
    assert state.identities == frozenset({identity_principal(ALICE_ID), identity_principal(ALICE_ID2)})
    assert all(i.startswith("urn:globus:auth:identity") for i in state.identities)
    assert isinstance(state.identities, frozenset)


def test_get_groups(checker: TokenChecker) -> None:
    state = checker.check_token("tok-valid")
    # only active memberships count: the pending one is not a group of the caller
    assert state.groups == frozenset({f"urn:globus:groups:id:{GROUP_MEMBER}", f"urn:globus:groups:id:{GROUP_ADMIN}"})
    assert all(g.startswith("urn:globus:groups:id:") for g in state.groups)
    assert state.principals == state.identities | state.groups
    assert checker.check_token("tok-bob").groups == frozenset()


def test_effective_identity(checker: TokenChecker) -> None:
    assert checker.check_token("tok-valid").effective_identity == identity_principal(ALICE_ID)
    assert checker.check_token("tok-bob").effective_identity == identity_principal(BOB_ID)


def test_caching_identities(fake: Fake, checker: TokenChecker) -> None:
    token = fake.new_token(**ALICE)
    before = introspections(fake)
    state = checker.check_token(token)
    for _ in range(3):
        state.identities
        state.effective_identity
        checker.check_token(token).identities  # other states of the same token too
    assert introspections(fake) - before == 1
    assert checker.check_token(token).cache_source == "memory"


def test_caching_groups(fake: Fake, checker: TokenChecker) -> None:
    token = fake.new_token(**ALICE)
    before = fake.counters()
    for _ in range(3):
        assert len(checker.check_token(token).groups) == 2
    after = fake.counters()
    assert after["dependent_token"] - before["dependent_token"] == 1
    assert after["groups"] - before["groups"] == 1


# ---- test_tokenchecker.py -------------------------------------------------------------------------


def test_create_multiple_tokencheckers(fake: Fake) -> None:
    checkers = [make_checker(fake) for _ in range(3)]
    assert all(c.check_token("tok-valid").identities for c in checkers)
    for c in checkers:
        c.close()


def test_custom_tokenchecker(fake: Fake, memory_cache_after: None) -> None:
    config = {"backend": "dogpile.cache.memory", "timeout": 17}
    original = copy.deepcopy(config)
    c = make_checker(fake, cache_config=config)
    assert config == original  # the original popped keys out of the caller's dict
    cache = tokenchecker.stats()["cache"]
    assert cache["timeout_s"] == 17 and cache["backend"] == "memory", cache
    c.close()


def test_cache_config_timeout_string_is_a_configuration_error(fake: Fake) -> None:
    with pytest.raises(errors.ConfigurationError) as info:
        make_checker(fake, cache_config={"backend": "dogpile.cache.memory", "timeout": "60"})
    assert isinstance(info.value, tokenchecker.InvalidConfigError)
    assert "timeout" in info.value.message


def test_unknown_option_is_refused(fake: Fake) -> None:
    with pytest.raises(tokenchecker.InvalidConfigError) as info:
        make_checker(fake, no_such_key=1)
    assert "no_such_key" in info.value.message


def test_caching_across_instances(fake: Fake, checker: TokenChecker) -> None:
    token = fake.new_token(**ALICE)
    before = introspections(fake)
    assert checker.check_token(token).identities
    other = make_checker(fake, verify_credentials=False)
    assert other.check_token(token).effective_identity == identity_principal(ALICE_ID)
    assert other.check_token(token).cache_source == "memory"
    assert introspections(fake) - before == 1
    other.close()


# ---- what the original did silently --------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, error",
    [
        ({"active": False}, errors.InactiveTokenError),
        ({"exp_in": -100}, errors.TokenExpiredError),
        ({"nbf_in": 600}, errors.TokenExpiredError),
        ({"scope": "urn:globus:auth:scope:other:all"}, errors.InsufficientScopeError),
        ({"aud": ["other-client"]}, errors.WrongAudienceError),
    ],
)
def test_invalid_token_gives_empty_sets_and_an_error(
    fake: Fake, checker: TokenChecker, spec: Dict[str, Any], error: Type[errors.TokenCheckerError]
) -> None:
    token = fake.new_token(**spec)
    state = checker.check_token(token)
    assert state.identities == frozenset()
    assert state.effective_identity is None
    assert state.groups == frozenset()
    assert state.principals == frozenset()
    assert state.introspect_token() is None
    assert state.valid is False
    assert len(state.errors) == 1 and isinstance(state.errors[0], error)
    assert state.error is state.errors[0]
    assert token not in str(state.errors[0]) and token not in repr(state)
    assert not state.check_authorization([identity_principal(DEFAULT_ID)])
    with pytest.raises(error):
        state.raise_for_error()
    with pytest.raises(error):
        checker.check(token)


def test_active_token_without_an_identity_set(fake: Fake, checker: TokenChecker) -> None:
    # Active without an identity set: valid, and it says so (no identities), not "inactive".
    token = fake.new_token(omit_identity_set=True)
    state = checker.check_token(token)
    assert state.valid is True
    assert state.identities == frozenset()
    assert not state.check_authorization([identity_principal(DEFAULT_ID)])


def test_unknown_token(checker: TokenChecker) -> None:
    state = checker.check_token("NotAToken")
    assert state.identities == frozenset()
    assert isinstance(state.errors[0], errors.InactiveTokenError)
    assert checker.check_token("").identities == frozenset()  # malformed: an error, not a crash


def test_strict_raises_typed_errors(fake: Fake) -> None:
    strict = make_checker(fake, strict=True, verify_credentials=False)
    with pytest.raises(errors.InactiveTokenError) as info:
        strict.check_token("tok-inactive").identities
    assert info.value.code == "TC_INACTIVE_TOKEN" and info.value.status == 3
    with pytest.raises(errors.TokenExpiredError):
        strict.check_token("tok-expired").effective_identity
    assert strict.check_token("tok-valid").identities
    strict.close()


def test_expected_scopes_subset_and_override(fake: Fake, checker: TokenChecker) -> None:
    token = fake.new_token(scope=f"{SCOPE} openid")
    # any one of the expected scopes is enough (the original's rule)
    assert checker.check_token(token, expected_scopes=[SCOPE, "urn:other"]).identities
    assert checker.check_token(token, expected_scopes=["openid"]).identities
    # the original's cache let a token cleared for one scope pass a check for another
    state = checker.check_token(token, expected_scopes=["urn:globus:auth:scope:other:all"])
    assert state.identities == frozenset()
    err = state.errors[0]
    assert isinstance(err, errors.InsufficientScopeError)
    assert err.token_scopes == (SCOPE, "openid")  # the token's, from the error document
    assert state.expected_scopes == frozenset({"urn:globus:auth:scope:other:all"})
    # a space-separated string is accepted
    assert checker.check_token(token, expected_scopes=f"urn:x {SCOPE}").identities


def test_expected_audience(fake: Fake) -> None:
    token = fake.new_token(aud=["other-client", "auth.globus.org"])
    c = make_checker(fake, verify_credentials=False)
    assert c.check_token(token).identities == frozenset()
    other = TokenChecker(CLIENT_ID, CLIENT_SECRET, [SCOPE], expected_audience="other-client",
                         auth_url=fake.url, groups_url=fake.url)
    assert other.expected_audience == "other-client"
    assert other.check_token(token).identities


def test_introspect_token_shape(fake: Fake, checker: TokenChecker) -> None:
    # every member the server sent, those the library does not read included
    session = {"session_id": "s-1", "authentications": {ALICE_ID: {"acr": None, "auth_time": 1}}}
    token = fake.new_token(**ALICE, extra={"session_info": session, "custom": [1, "two"]})
    resp = checker.check_token(token).introspect_token()
    assert resp is not None
    assert resp["session_info"] == session and resp["custom"] == [1, "two"]
    assert resp["iss"] == "https://auth.globus.org" and resp["token_type"] == "Bearer"
    assert resp["identity_set"] == [ALICE_ID, ALICE_ID2] and resp["sub"] == ALICE_ID
    resp = checker.check_token("tok-valid").introspect_token()
    assert resp is not None
    assert resp["active"] is True and resp["sub"] == ALICE_ID
    assert resp["identity_set"] == [ALICE_ID, ALICE_ID2]
    assert set(resp["scope"].split()) == {SCOPE, "openid"}
    assert CLIENT_ID in resp["aud"] and resp["exp"] > resp["iat"]
    assert resp["username"] == "alice@example.org"
    state = checker.check_token("tok-valid")
    assert state.username == "alice@example.org" and state.name == "Alice"
    assert state.scopes == frozenset({SCOPE, "openid"}) and state.sub == ALICE_ID


def test_check_authorization(fake: Fake, checker: TokenChecker) -> None:
    state = checker.check_token(fake.new_token(**ALICE))
    assert state.check_authorization([identity_principal(ALICE_ID2)])
    assert state.matched == state.matched_principal == identity_principal(ALICE_ID2)
    assert state.check_authorization([f"urn:globus:groups:id:{GROUP_ADMIN}"])
    assert state.matched == f"urn:globus:groups:id:{GROUP_ADMIN}"
    # any iterable of principals, read once; a plain string is one principal
    assert state.check_authorization(p for p in [identity_principal(BOB_ID), identity_principal(ALICE_ID)])
    assert state.check_authorization(identity_principal(ALICE_ID))
    assert state.check_authorization(frozenset({identity_principal(ALICE_ID)}))
    assert not state.check_authorization([f"urn:globus:groups:id:{GROUP_PENDING}"])
    assert not state.check_authorization(["public"])
    assert state.check_authorization(["public"], allow_public=True)
    assert not state.check_authorization(["all_authenticated_users"])
    assert state.check_authorization(["all_authenticated_users"], allow_all_authenticated_users=True)
    assert not state.check_authorization([identity_principal(BOB_ID)])
    # an invalid token is still "public" when public is allowed (the original's rule)
    bad = checker.check_token("tok-inactive")
    assert bad.check_authorization(["public"], allow_public=True)
    assert not bad.check_authorization(["all_authenticated_users"], allow_all_authenticated_users=True)


def test_identity_match_does_not_fetch_groups(fake: Fake, checker: TokenChecker) -> None:
    state = checker.check_token(fake.new_token(**ALICE))
    before = fake.counters()
    assert state.check_authorization([identity_principal(ALICE_ID), f"urn:globus:groups:id:{GROUP_MEMBER}"])
    assert fake.counters()["groups"] == before["groups"]


def test_groups_unavailable(fake: Fake, checker: TokenChecker) -> None:
    token = fake.new_token(**ALICE)
    fake.set_fault(endpoint="groups", status=503, count=10)
    state = checker.check_token(token)
    # the original: an empty set, the error in state.errors
    assert state.groups == frozenset()
    assert isinstance(state.errors[-1], errors.AuthUnavailableError)
    assert not state.check_authorization([f"urn:globus:groups:id:{GROUP_MEMBER}"])
    strict = make_checker(fake, strict=True, verify_credentials=False, max_retries=0)
    with pytest.raises(errors.AuthUnavailableError):
        strict.check_token(token).groups
    with pytest.raises(errors.AuthUnavailableError):
        checker.groups(token)
    fake.clear_faults()
    # failures are not cached
    assert len(checker.check_token(token).groups) == 2
    strict.close()


def test_service_without_groups_dependency(fake: Fake) -> None:
    fake.add_client("py-nogroups", "secret", groups_dependency=False)
    token = fake.new_token(aud=["py-nogroups"], **{k: v for k, v in ALICE.items()})
    c = TokenChecker("py-nogroups", "secret", [SCOPE], auth_url=fake.url, groups_url=fake.url)
    state = c.check_token(token)
    assert state.identities
    assert state.groups == frozenset()
    assert isinstance(state.errors[-1], errors.NotAuthorizedError)
    with pytest.raises(errors.NotAuthorizedError):
        c.groups(token)
    c.close()


def test_auth_unavailable_raises_even_by_default(fake: Fake) -> None:
    c = make_checker(fake, verify_credentials=False, max_retries=0)
    token = fake.new_token()
    fake.set_fault(endpoint="introspect", status=503, count=5)
    state = c.check_token(token)
    with pytest.raises(errors.AuthUnavailableError):
        state.identities  # the original's SDK raised too (GlobusAPIError)
    fake.clear_faults()
    assert state.identities  # not cached: the next read asks again
    c.close()


def test_dependent_tokens(fake: Fake, checker: TokenChecker) -> None:
    state = checker.check_token(fake.new_token(**ALICE))
    deps = state.get_dependent_tokens()
    transfer = deps.by_resource_server["transfer.api.globus.org"]
    assert transfer["scope"] == TRANSFER_SCOPE
    assert transfer["access_token"].startswith("dep-")
    assert transfer["expires_at_seconds"] > 0 and transfer["token_type"].lower() == "bearer"
    assert deps.by_scopes[TRANSFER_SCOPE]["access_token"] == transfer["access_token"]
    direct = checker.dependent_token(state.bearer_token, "transfer.api.globus.org")
    assert direct["access_token"] == transfer["access_token"]  # cached for its lifetime
    assert tokenchecker.GROUPS_SCOPE in deps.by_scopes
    assert "urn:globus:auth:scope:nothing:all" not in deps.by_scopes
    with pytest.raises(KeyError):
        deps.by_resource_server["nothing.example.org"]
    assert set(deps.by_resource_server) == {"transfer.api.globus.org"}


def test_purge(fake: Fake, checker: TokenChecker) -> None:
    token = fake.new_token(**ALICE)
    assert checker.check_token(token).identities
    checker.purge(token)
    assert checker.check_token(token).cache_source == "network"
    checker.purge_identity(ALICE_ID2)
    assert checker.check_token(token).cache_source == "network"


def test_closed_checker(fake: Fake) -> None:
    c = make_checker(fake, verify_credentials=False)
    state = c.check_token("tok-valid")
    c.close()
    assert c.closed
    with pytest.raises(errors.CheckerClosedError):
        c.check_token("tok-valid")
    # a state made before close still works: it holds its own reference to the native checker
    assert state.identities


def test_tls_with_ca_certs(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    tls = Fake(["--tls-ca-out", str(ca)])
    try:
        assert tls.url.startswith("https://localhost:")
        c = TokenChecker(CLIENT_ID, CLIENT_SECRET, [SCOPE], auth_url=tls.url, groups_url=tls.url, ca_certs=ca)
        assert c.check_token("tok-valid").effective_identity == identity_principal(ALICE_ID)
        c.close()
        # without the CA the server is not trusted: unavailable, not "inactive"
        c = TokenChecker(CLIENT_ID, CLIENT_SECRET, [SCOPE], auth_url=tls.url, groups_url=tls.url,
                         verify_credentials=False, max_retries=0)
        with pytest.raises(errors.AuthUnavailableError):
            c.check_token("tok-bob").identities
        c.close()
    finally:
        tls.stop()
