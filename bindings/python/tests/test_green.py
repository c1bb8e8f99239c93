"""Cooperative waiting: under gevent or eventlet monkey-patching a miss waits on the hub (through
the library's async calls and a pipe), so the worker's other greenlets keep running.

The greenlet tests run tests/scenarios.py in a fresh interpreter (monkey-patching must come
first), killed if it does not answer in time.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterator

import pytest

import tokenchecker
from tokenchecker import InvalidConfigError, identity_principal

from conftest import GROUP_MEMBER, TRANSFER_SCOPE, Fake, make_checker
from test_fork import new_tokens, run_scenario, wrong_answers

N = 10
SERIAL_S = N * 0.5  # the 10 misses of a phase, one after the other


@pytest.fixture(scope="module")
def green_fake() -> Iterator[Fake]:
    f = Fake()
    yield f
    f.stop()


@pytest.mark.parametrize("mode", ["gevent", "eventlet"])
def test_greenlets_overlap_misses_and_the_hub_keeps_ticking(green_fake: Fake, mode: str) -> None:
    got = run_scenario(mode, green_fake.url, "misses", timeout=90)
    for name in ("check", "dependent_token", "groups", "authorize", "inactive"):
        phase: Dict[str, Any] = got[name]
        assert phase["wrong"] == [], (name, phase)
        # 10 misses of 0.5 s at once: together far less than one after the other (5 s)
        assert phase["elapsed"] < SERIAL_S / 2, (name, phase)
        # a greenlet sleeping 10 ms at a time was never held up for a whole miss
        assert phase["worst_gap"] < 0.3, (name, phase)
        assert phase["ticks"] >= 10, (name, phase)
    # the control: cooperative=False blocks the hub, and the measure above sees it
    blocking = got["blocking"]
    assert blocking["wrong"] == []
    assert blocking["elapsed"] >= 4 * 0.5 * 0.9, blocking
    assert blocking["worst_gap"] >= 0.4, blocking
    # a greenlet interrupted while it waits: the timeout, then nothing leaked
    assert got["timeout"] == "Timeout", got
    identities, source, want = got["after_timeout"]
    assert identities == want and source == "memory"
    assert got["pipes_after"] == got["pipes_before"], got
    assert got["pending_after"] == 0


def open_pipes() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
        except OSError:  # the directory's own descriptor, gone
            pass
    return n


def test_cooperative_true_without_gevent(fake: Fake) -> None:
    """cooperative=True without gevent or eventlet: the async calls and the pipe, waited for
    with a plain select(); same answers, no descriptor left open."""
    before = open_pipes()  # nothing of ours in flight
    c = make_checker(fake, verify_credentials=False, cooperative=True)
    spec = {
        "dependent_tokens": [{"scope": TRANSFER_SCOPE, "resource_server": "transfer.api.globus.org"}],
        "groups": [GROUP_MEMBER],
    }
    (warm, _), = new_tokens(fake, 1, **spec)
    c.check(warm)
    tokens = new_tokens(fake, 60, **spec)

    def one(item: Any) -> Any:
        tok, ident = item
        state = c.check(tok)
        return [tok, sorted(state.identities), state.cache_source]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, tokens))
    assert wrong_answers(results, tokens) == []
    assert {r[2] for r in results} == {"network"}  # through tc_check_async (its own cache source)
    tok, ident = tokens[0]
    assert c.check(tok).cache_source == "memory"
    assert c.authorize(tok, [identity_principal(ident)]).matched == identity_principal(ident)
    # a miss of a group authorization waits the same way (tc_authorize_async, then the policy)
    (gtok, _), = new_tokens(fake, 1, **spec)
    group = f"urn:globus:groups:id:{GROUP_MEMBER}"
    assert c.authorize(gtok, ["urn:globus:groups:id:00000000-0000-4000-8000-000000000000", group]).matched == group
    assert c.check_token(gtok).check_authorization([group])
    assert c.dependent_token(tok, "transfer.api.globus.org")["scope"] == TRANSFER_SCOPE
    assert c.groups(tok) == {f"urn:globus:groups:id:{GROUP_MEMBER}"}
    (bad, _), = new_tokens(fake, 1, active=False)
    with pytest.raises(tokenchecker.InactiveTokenError):
        c.check(bad)
    with pytest.raises(tokenchecker.NotAuthorizedError):
        c.authorize(tokens[1][0], [identity_principal(ident)])
    from tokenchecker import _checker

    deadline = time.monotonic() + 5  # each callback closes its write end just after the wake-up
    while open_pipes() != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_pipes() == before
    assert len(_checker._pending) == 0
    c.close()


def test_cooperative_option_is_checked(fake: Fake) -> None:
    with pytest.raises(InvalidConfigError, match="cooperative"):
        make_checker(fake, verify_credentials=False, cooperative="yes")
    for value in (None, True, False):
        c = make_checker(fake, verify_credentials=False, cooperative=value)
        assert c.cooperative is value
        assert c.check("tok-valid").identities
        c.close()
