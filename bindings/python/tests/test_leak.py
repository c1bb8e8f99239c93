"""No leak over 1 M cached checks: RSS stays flat after a warm-up."""

from __future__ import annotations

import asyncio
import gc
import os
import time

from tokenchecker import TokenChecker

from conftest import Fake

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def test_one_million_cached_checks_do_not_leak(fake: Fake, checker: TokenChecker) -> None:
    tokens = [fake.new_token() for _ in range(8)]
    for t in tokens:
        assert checker.check_token(t).identities
    for i in range(200_000):  # warm-up: allocator pools, the answer memo, counters
        checker.check_token(tokens[i & 7]).identities
    gc.collect()
    before = rss()
    start = time.monotonic()
    for i in range(1_000_000):
        checker.check_token(tokens[i & 7]).identities
    elapsed = time.monotonic() - start
    gc.collect()
    grown = rss() - before
    assert grown < 8 * 1024 * 1024, f"RSS grew by {grown / 1e6:.1f} MB over 1 M cached checks"
    assert elapsed < 50


def test_failing_and_async_checks_do_not_leak(fake: Fake, checker: TokenChecker) -> None:
    async def burst(n: int) -> None:
        for _ in range(n):
            await checker.check_token_async("tok-valid")
            checker.check_token("tok-inactive").identities  # cached negative: an error document

    asyncio.run(burst(50_000))
    gc.collect()
    before = rss()
    asyncio.run(burst(200_000))
    gc.collect()
    grown = rss() - before
    assert grown < 8 * 1024 * 1024, f"RSS grew by {grown / 1e6:.1f} MB"
