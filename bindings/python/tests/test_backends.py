"""cache_config with real Redis and Memcached servers (started on free loopback ports)."""

from __future__ import annotations

import copy
from typing import Any, Dict

import pytest

from tokenchecker import identity_principal

from conftest import ALICE_ID, Fake, introspections, make_checker, raw_command


def _shared_cache_roundtrip(fake: Fake, cache_config: Dict[str, Any], source: str) -> None:
    original = copy.deepcopy(cache_config)
    first = make_checker(fake, cache_config=cache_config)
    assert cache_config == original
    token = fake.new_token(identity_set=[ALICE_ID])
    before = introspections(fake)
    assert first.check_token(token).effective_identity == identity_principal(ALICE_ID)
    assert introspections(fake) - before == 1
    # a new checker with a cache_config rebuilds the process-wide cache: the in-process layer is
    # empty, the shared backend still holds the answer (as a fleet's other process would see it)
    second = make_checker(fake, cache_config=cache_config, verify_credentials=False)
    state = second.check_token(token)
    assert state.identities == frozenset({identity_principal(ALICE_ID)})
    assert state.cache_source == source
    assert introspections(fake) - before == 1
    first.close()
    second.close()


def test_redis(fake: Fake, redis_port: int, memory_cache_after: None) -> None:
    config = {"backend": "dogpile.cache.redis", "timeout": 60, "url": f"redis://127.0.0.1:{redis_port}/0",
              "distributed_lock": True}
    _shared_cache_roundtrip(fake, config, "redis")
    keys = raw_command(redis_port, b"DBSIZE\r\n")
    assert keys.startswith(b":") and int(keys[1:]) > 0, keys
    # values are sealed: no identity in the dump
    dump = raw_command(redis_port, b"KEYS *\r\n")
    assert b"tc:" in dump and ALICE_ID.encode() not in dump


def test_redis_host_port_args(fake: Fake, redis_port: int, memory_cache_after: None) -> None:
    _shared_cache_roundtrip(
        fake, {"backend": "dogpile.cache.redis", "host": "127.0.0.1", "port": redis_port, "db": 1}, "redis"
    )


def test_memcached(fake: Fake, memcached_port: int, memory_cache_after: None) -> None:
    config = {"backend": "dogpile.cache.memcached", "timeout": 60, "url": [f"127.0.0.1:{memcached_port}"],
              "distributed_lock": True}
    _shared_cache_roundtrip(fake, config, "memcached")
    stats = raw_command(memcached_port, b"stats\r\n")
    items = [line for line in stats.split(b"\r\n") if line.startswith(b"STAT curr_items ")]
    assert items and int(items[0].split()[-1]) > 0, stats


def test_backend_down_does_not_break_checks(fake: Fake, memory_cache_after: None) -> None:
    from conftest import free_port

    c = make_checker(fake, cache_config={"backend": "redis", "url": f"redis://127.0.0.1:{free_port()}/0",
                                         "socket_timeout": 0.1})
    assert c.check_token(fake.new_token()).identities
    c.close()


@pytest.mark.parametrize("bad", [{"backend": "nope"}, {"backend": "dogpile.cache.redis", "url": 5}])
def test_bad_cache_config(fake: Fake, bad: Dict[str, Any]) -> None:
    from tokenchecker import ConfigurationError

    with pytest.raises(ConfigurationError):
        make_checker(fake, cache_config=bad)
