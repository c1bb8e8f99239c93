"""Threads and asyncio: one introspection for 1,000 concurrent checks of one new token, the GIL
released during blocking calls, the event loop never blocked."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tokenchecker import AuthUnavailableError, TokenChecker, identity_principal

from conftest import ALICE_ID, GROUP_MEMBER, SCOPE, Fake, introspections, make_checker

N = 1000


def test_threads_one_introspection(fake: Fake, checker: TokenChecker) -> None:
    token = fake.new_token(identity_set=[ALICE_ID])
    fake.set_fault(endpoint="introspect", latency_ms=300, count=1)
    before = introspections(fake)
    barrier = threading.Barrier(50)

    def one(i: int) -> str | None:
        if i < 50:
            barrier.wait()
        return checker.check_token(token).effective_identity

    with ThreadPoolExecutor(max_workers=N) as pool:
        results = list(pool.map(one, range(N)))
    assert results == [identity_principal(ALICE_ID)] * N
    assert introspections(fake) - before == 1
    assert fake.counters()["max_concurrent"]["introspect"] >= 1


def test_gil_released_while_blocked(fake: Fake, checker: TokenChecker) -> None:
    token = fake.new_token()
    fake.set_fault(endpoint="introspect", latency_ms=400, count=1)
    t = threading.Thread(target=lambda: checker.check_token(token).identities)
    t.start()
    time.sleep(0.05)
    spins = 0
    start = time.monotonic()
    while t.is_alive() and time.monotonic() - start < 5:
        spins += 1  # runs only while the other thread does not hold the GIL
    t.join()
    assert spins > 10_000


def test_asyncio_one_introspection_loop_not_blocked(fake: Fake, checker: TokenChecker) -> None:
    token = fake.new_token(identity_set=[ALICE_ID])
    fake.set_fault(endpoint="introspect", latency_ms=300, count=1)
    before = introspections(fake)

    async def main() -> tuple[list[str | None], float]:
        worst = 0.0
        done = False

        async def ticker() -> None:
            nonlocal worst
            last = time.monotonic()
            while not done:
                await asyncio.sleep(0.005)
                now = time.monotonic()
                worst = max(worst, now - last)
                last = now

        tick = asyncio.create_task(ticker())
        states = await asyncio.gather(*(checker.check_token_async(token) for _ in range(N)))
        done = True
        await tick
        return [s.effective_identity for s in states], worst

    results, worst = asyncio.run(main())
    assert results == [identity_principal(ALICE_ID)] * N
    assert introspections(fake) - before == 1
    assert worst < 0.25, f"the event loop was blocked for {worst:.3f} s"


def test_async_errors_and_cached_path(fake: Fake) -> None:
    c = make_checker(fake, verify_credentials=False, max_retries=0)

    async def main() -> None:
        state = await c.check_token_async("tok-valid")
        assert state.effective_identity == identity_principal(ALICE_ID)
        again = await c.check_token_async("tok-valid")
        assert again.cache_source == "memory"
        bad = await c.check_token_async("tok-inactive")
        assert bad.identities == frozenset() and bad.error is not None and bad.error.code == "TC_INACTIVE_TOKEN"
        fake.set_fault(endpoint="introspect", status=503, count=5)
        with pytest.raises(AuthUnavailableError):
            await c.check_token_async(fake.new_token())
        fake.clear_faults()
        group = f"urn:globus:groups:id:{GROUP_MEMBER}"
        authz = await c.authorize_async("tok-valid", [group])
        assert authz.matched_principal == group
        dep = await c.dependent_token_async("tok-valid", "transfer.api.globus.org")
        assert dep["resource_server"] == "transfer.api.globus.org"

    asyncio.run(main())
    c.close()


def test_async_cancellation_and_closed_loop(fake: Fake, checker: TokenChecker) -> None:
    token = fake.new_token()
    fake.set_fault(endpoint="introspect", latency_ms=300, count=2)

    async def cancel() -> None:
        task = asyncio.create_task(checker.check_token_async(token))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel())

    async def abandon() -> None:  # the loop closes while the library still works on it
        asyncio.get_running_loop().create_task(checker.check_token_async(fake.new_token()))
        await asyncio.sleep(0.01)

    asyncio.run(abandon())
    time.sleep(0.5)  # both callbacks arrive after their loop stopped waiting: nothing breaks
    assert checker.check_token(token).identities


def test_async_on_many_loops_in_threads(fake: Fake, checker: TokenChecker) -> None:
    tokens = [fake.new_token() for _ in range(8)]

    def run(tok: str) -> int:
        async def main() -> int:
            states = await asyncio.gather(*(checker.check_token_async(tok) for _ in range(50)))
            return sum(1 for s in states if s.identities)

        return asyncio.run(main())

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(run, tokens)) == [50] * 8


def test_per_call_scopes_share_one_request_cap() -> None:
    """check_token(t, expected_scopes=…) derives a checker that shares this one's HTTP client and
    request slots (tc_derive): max_concurrent_requests stays one cap for every scope set."""
    f = Fake()  # its own: max_concurrent counts from its start
    try:
        c = make_checker(f, verify_credentials=False, max_concurrent_requests=2)
        scope_sets = [None, [SCOPE, "openid"], ["openid"], f"{SCOPE} urn:other"]
        tokens = [f.new_token(scope=f"{SCOPE} openid", identity_set=[ALICE_ID]) for _ in range(8)]
        f.set_fault(endpoint="introspect", latency_ms=300)  # every introspection takes 300 ms

        def one(i: int) -> frozenset[str]:
            return c.check_token(tokens[i], expected_scopes=scope_sets[i % 4]).identities

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(one, range(8)))
        assert results == [frozenset({identity_principal(ALICE_ID)})] * 8
        # 8 requests at once from 4 scope sets: never more than 2 at the server (separate
        # checkers per scope set would have had 2 each)
        assert f.counters()["max_concurrent"]["introspect"] == 2
        assert len(c._derived) == 3
        c.close()
    finally:
        f.stop()
