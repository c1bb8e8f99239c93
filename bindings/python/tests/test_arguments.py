"""What reaches the library as a C string: NUL bytes are refused (C would cut the string there),
and the call_timeout_ms option."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Callable, Dict

import pytest

from tokenchecker import AuthUnavailableError, InvalidArgumentError, InvalidConfigError, TokenChecker

from conftest import GROUP_MEMBER, TRANSFER_SCOPE, Fake, introspections, make_checker

GROUP = f"urn:globus:groups:id:{GROUP_MEMBER}"
USER_ID = str(uuid.uuid4())  # an identity of these tests only (purge_identity forgets its tokens)
USER = f"urn:globus:auth:identity:{USER_ID}"


@pytest.fixture
def cached(fake: Fake, checker: TokenChecker) -> str:
    """A valid token whose check, groups and dependent token are cached: a call cut at the NUL
    ("<token>\\x00junk" seen as "<token>") would succeed without a request."""
    token = fake.new_token(
        identity_set=[USER_ID],
        groups=[GROUP_MEMBER],
        dependent_tokens=[{"scope": TRANSFER_SCOPE, "resource_server": "transfer.api.globus.org"}],
    )
    assert checker.check(token).identities == {USER}
    assert checker.groups(token) == {GROUP}
    assert checker.dependent_token(token, TRANSFER_SCOPE)["scope"] == TRANSFER_SCOPE
    assert checker.dependent_token(token, "transfer.api.globus.org")["scope"] == TRANSFER_SCOPE
    return token


def empty_token_error(checker: TokenChecker) -> type:
    state = checker.check_token("")
    assert state.identities == frozenset()
    return type(state.errors[0])


def test_nul_refused_in_every_entry_point(fake: Fake, checker: TokenChecker, cached: str) -> None:
    bad = cached + "\x00junk"
    assert empty_token_error(checker) is InvalidArgumentError
    strict = make_checker(fake, verify_credentials=False, strict=True)
    calls: Dict[str, Callable[[], Any]] = {
        "check": lambda: checker.check(bad),
        "check (bytes)": lambda: checker.check(bad.encode()),  # type: ignore[arg-type]
        "check (expected_scopes)": lambda: checker.check(bad, ["urn:globus:auth:scope:test:all", "openid"]),
        "check_token(...).raise_for_error": lambda: checker.check_token(bad).raise_for_error(),
        "authorize": lambda: checker.authorize(bad, [GROUP]),
        "authorize (public)": lambda: checker.authorize(bad, ["public"], allow_public=True),
        "dependent_token (token)": lambda: checker.dependent_token(bad, TRANSFER_SCOPE),
        "dependent_token (scope)": lambda: checker.dependent_token(cached, TRANSFER_SCOPE + "\x00junk"),
        "dependent_token (resource server)": lambda: checker.dependent_token(cached, "transfer.api.globus.org\x00"),
        "groups": lambda: checker.groups(bad),
        "purge": lambda: checker.purge(bad),
        "purge_identity (id)": lambda: checker.purge_identity(USER_ID + "\x00junk"),
        "purge_identity (principal)": lambda: checker.purge_identity(USER + "\x00"),
        "check_token_async (strict)": lambda: asyncio.run(strict.check_token_async(bad)),
        "authorize_async": lambda: asyncio.run(checker.authorize_async(bad, [GROUP])),
        "dependent_token_async (token)": lambda: asyncio.run(checker.dependent_token_async(bad, TRANSFER_SCOPE)),
        "dependent_token_async (scope)": lambda: asyncio.run(
            checker.dependent_token_async(cached, TRANSFER_SCOPE + "\x00")
        ),
    }
    before = introspections(fake)
    for name, call in calls.items():
        with pytest.raises(InvalidArgumentError) as info:
            call()
        assert "NUL" in info.value.message, name
        assert cached not in str(info.value) and "junk" not in str(info.value), name
    assert introspections(fake) == before  # nothing reached the server

    # the original's lazy API: an empty identity set, the error in errors (as for an empty token)
    state = checker.check_token(bad)
    assert state.identities == frozenset() and state.effective_identity is None
    assert [type(err) for err in state.errors] == [InvalidArgumentError]
    assert not state.valid
    bstate = checker.check_token(bad.encode())  # type: ignore[arg-type]
    assert bstate.identities == frozenset() and isinstance(bstate.error, InvalidArgumentError)
    astate = asyncio.run(checker.check_token_async(bad))
    assert astate.identities == frozenset() and isinstance(astate.error, InvalidArgumentError)
    with pytest.raises(InvalidArgumentError):
        strict.check_token(bad).identities

    # the purges refused above removed nothing: the part before the NUL is still cached
    assert checker.check(cached).cache_source == "memory"
    strict.close()


def test_nul_checks_leave_valid_values_alone(checker: TokenChecker, cached: str) -> None:
    assert checker.check(cached.encode()).identities == {USER}  # type: ignore[arg-type]
    checker.purge_identity(USER_ID)
    assert checker.check(cached).cache_source == "network"


# ---- call_timeout_ms -----------------------------------------------------------------------------


def test_call_timeout_bounds_a_call(fake: Fake) -> None:
    c = make_checker(fake, verify_credentials=False, call_timeout_ms=400, max_retries=0)
    token = fake.new_token()
    fake.set_fault(endpoint="introspect", latency_ms=4000, count=1)
    start = time.monotonic()
    with pytest.raises(AuthUnavailableError):
        c.check(token)
    elapsed = time.monotonic() - start
    assert 0.3 <= elapsed < 3, f"a call bounded to 400 ms took {elapsed:.2f} s"
    assert c.check(token).identities  # the fault is spent: answered
    c.close()


@pytest.mark.parametrize("value", [0, -1, 600_001, "15000", 1.5, True])
def test_call_timeout_bad_values(fake: Fake, value: Any) -> None:
    with pytest.raises(InvalidConfigError, match="call_timeout_ms") as info:
        make_checker(fake, verify_credentials=False, call_timeout_ms=value)
    assert "unknown" not in info.value.message  # a known key, with a bad value


def test_call_timeout_good_values(fake: Fake, checker: TokenChecker) -> None:
    assert checker.check("tok-valid").identities  # cached: even 1 ms answers it
    for value in (1, 15_000, 600_000, None):  # None (null): the default
        c = make_checker(fake, verify_credentials=False, call_timeout_ms=value)
        assert c.check("tok-valid").cache_source == "memory"
        c.close()
