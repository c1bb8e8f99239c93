"""The binding itself: library loading, the JSON path, stats/metrics, logging, types."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tokenchecker
from tokenchecker import TokenChecker

from conftest import Fake, make_checker
from test_original import ALICE


def test_library_info() -> None:
    assert tokenchecker.library_version().count(".") == 2
    assert os.path.exists(tokenchecker.library_path())
    assert tokenchecker.ABI_VERSION == 2


def test_library_not_found_names_what_it_tried(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import tokenchecker
        try:
            tokenchecker.TokenChecker("a", "b", ["c"])
        except tokenchecker.LibraryNotFoundError as err:
            print(err)
        """
    )
    env = dict(os.environ, TOKENCHECKER_LIB_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert str(tmp_path) in out.stdout
    assert "libtokenchecker.so" in out.stdout and "TOKENCHECKER_LIB_DIR" in out.stdout


def test_json_path_gives_the_same_answers(fake: Fake) -> None:
    fast = make_checker(fake, verify_credentials=False)
    slow = make_checker(fake, verify_credentials=False)
    slow._fast = None
    slow._check = slow._check_with_json
    token = fake.new_token(**ALICE)
    for _ in range(2):
        a, b = fast.check_token(token), slow.check_token(token)
        assert a.identities == b.identities and a.effective_identity == b.effective_identity
        assert a.introspect_token() == b.introspect_token()
        assert a.username == b.username
        assert b.cache_source in ("memory", "network")
    bad_a, bad_b = fast.check_token("tok-expired"), slow.check_token("tok-expired")
    assert bad_a.identities == bad_b.identities == frozenset()
    assert type(bad_a.errors[0]) is type(bad_b.errors[0])
    fast.close()
    slow.close()


def test_answer_memo_is_bounded(fake: Fake, checker: TokenChecker) -> None:
    from tokenchecker import _checker

    assert len(_checker._MEMO) <= _checker._MEMO_MAX
    s = tokenchecker.stats()
    assert s["python"]["answer_memo_entries"] == len(_checker._MEMO)


def test_stats_and_metrics(checker: TokenChecker) -> None:
    checker.check_token("tok-valid").identities
    s = checker.stats()
    assert s["checks"] > 0 and "hits" in s and "misses" in s
    m = tokenchecker.metrics()
    assert "tokenchecker_checks_total" in m


def test_logging_never_shows_the_token(fake: Fake, caplog: pytest.LogCaptureFixture) -> None:
    tokenchecker.set_log_level("debug")
    try:
        c = make_checker(fake, verify_credentials=False, max_retries=0)
        token = fake.new_token()
        fake.set_fault(endpoint="introspect", status=500, count=1)
        with caplog.at_level(logging.DEBUG, logger="tokenchecker"):
            with pytest.raises(tokenchecker.AuthUnavailableError):
                c.check_token(token).identities
            assert c.check_token(token).identities
        records = [r for r in caplog.records if r.name == "tokenchecker"]
        assert records, "no log line reached the tokenchecker logger"
        assert all(token not in r.getMessage() for r in records)
        c.close()
    finally:
        tokenchecker.set_log_level(None)
    with pytest.raises(tokenchecker.InvalidArgumentError):
        tokenchecker.set_log_level("loud")


def test_py_typed_is_installed() -> None:
    assert os.path.exists(os.path.join(os.path.dirname(tokenchecker.__file__), "py.typed"))


def test_module_path_of_the_original() -> None:
    from tokenchecker import authentication

    assert authentication.TokenChecker is TokenChecker
    assert authentication.identity_principal("x") == "urn:globus:auth:identity:x"
    assert authentication.ConfigurationError is tokenchecker.ConfigurationError


def test_bytes_and_bad_tokens(checker: TokenChecker) -> None:
    assert checker.check_token(b"tok-valid").identities  # type: ignore[arg-type]
    state = checker.check_token("tok\udcff")
    assert state.identities == frozenset()
    assert isinstance(state.errors[0], tokenchecker.InvalidArgumentError)
    with pytest.raises(tokenchecker.InvalidArgumentError):
        checker.check(123)  # type: ignore[arg-type]


def test_bundled_library_is_used_without_the_variable() -> None:
    bundled_dir = Path(tokenchecker.__file__).parent / "_lib"
    code = "import tokenchecker; print(tokenchecker.library_path())"
    env = {k: v for k, v in os.environ.items() if k != "TOKENCHECKER_LIB_DIR"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if bundled_dir.is_dir():  # an installed wheel: its own copy wins over the system's
        assert out.returncode == 0, out.stderr
        assert Path(out.stdout.strip()).parent == bundled_dir
    else:  # a source tree: a system copy, or a clear error naming the variable
        assert out.returncode == 0 or "TOKENCHECKER_LIB_DIR" in out.stderr
