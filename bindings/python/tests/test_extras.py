"""The binding itself: library loading, the two implementations (the extension and ctypes), the
answer memo, the facts from the library, stats/metrics, logging, types."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List

import pytest

import tokenchecker
from tokenchecker import TokenChecker

from conftest import ALICE_ID, CLIENT_ID, Fake, make_checker
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


# ---- the two implementations: the extension and ctypes ------------------------------------------

#: Prints what one interpreter's checker answers (run under each implementation).
SAME_ANSWERS = """
import json, sys
import tokenchecker
url, alice, inactive, wrong = sys.argv[1:5]
c = tokenchecker.TokenChecker("test-client", "test-secret", ["urn:globus:auth:scope:test:all"],
                              auth_url=url, groups_url=url, verify_credentials=False)
out = {"implementation": tokenchecker.implementation()}
for i in range(2):
    s = c.check_token(alice)
    out[f"alice{i}"] = [sorted(s.identities), s.effective_identity, s.username, s.name, s.email, s.client_id,
                        sorted(s.scopes), list(s.audience), s.identity_ids, s.sub, s.expires_at is not None,
                        s.cache_source, s.introspect_token()]
bad = (("inactive", inactive), ("wrong", wrong), ("empty", ""), ("nul", "a\\x00b"), ("bytes", alice.encode()))
for name, tok in bad:
    s = c.check_token(tok)
    out[name] = [sorted(s.identities), s.effective_identity, [type(e).__name__ for e in s.errors],
                 list(getattr(s.error, "token_scopes", ())), s.valid]
g = "urn:globus:groups:id:11111111-1111-4111-8111-111111111111"
out["authorize"] = c.authorize(alice, ["urn:x", g]).matched
out["check_authorization"] = [c.check_token(alice).check_authorization(p) for p in ([g], ["urn:x"], ["public"])]
try:
    c.authorize(alice, ["urn:x"])
except tokenchecker.NotAuthorizedError as err:
    out["not_authorized"] = [err.code, err.status]
out["stats"] = tokenchecker.stats()["python"]["implementation"]
print(json.dumps(out))
"""


def _answers(fake: Fake, env: Dict[str, str], tokens: List[str]) -> Dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", SAME_ANSWERS, fake.url, *tokens], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    doc: Dict[str, Any] = json.loads(out.stdout)
    return doc


def _env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TOKENCHECKER_PY_PURE", "TOKENCHECKER_MEMO_BYTES")}
    env.update(extra)
    return env


def test_both_implementations_give_the_same_answers(fake: Fake) -> None:
    def tokens() -> List[str]:  # new ones for each run: both see the network, then the cache
        return [fake.new_token(**ALICE), fake.new_token(active=False),
                fake.new_token(identity_set=[ALICE_ID], scope="urn:globus:auth:scope:other:all openid")]

    ext = _answers(fake, _env(), tokens())
    pure = _answers(fake, _env(TOKENCHECKER_PY_PURE="1"), tokens())
    assert pure["implementation"] == pure["stats"] == "ctypes"
    assert ext["implementation"] == ext["stats"] == DEFAULT_IMPLEMENTATION
    for doc in (ext, pure):  # the volatile parts
        for key in ("alice0", "alice1"):
            intro = doc[key][-1]
            assert intro["exp"] > intro["iat"]
            for k in ("exp", "iat", "nbf"):
                intro.pop(k)
    del ext["implementation"], ext["stats"], pure["implementation"], pure["stats"]
    assert ext == pure
    assert [ext["alice0"][-2], ext["alice1"][-2]] == ["network", "memory"]
    assert ext["wrong"][2:4] == [["InsufficientScopeError"], ["urn:globus:auth:scope:other:all", "openid"]]
    assert ext["nul"][2] == ["InvalidArgumentError"] and ext["empty"][2] == ["InvalidArgumentError"]
    assert ext["authorize"] == "urn:globus:groups:id:11111111-1111-4111-8111-111111111111"
    assert ext["check_authorization"] == [True, False, False]
    assert ext["not_authorized"] == ["TC_NOT_AUTHORIZED", tokenchecker.library_info()["statuses"]["TC_NOT_AUTHORIZED"]]


#: What this run runs: scripts/test.sh installs the package with the extension built, and runs
#: the suite once as it is and once with TOKENCHECKER_PY_PURE=1 (ctypes).
EXPECTED_IMPLEMENTATION = "ctypes" if os.environ.get("TOKENCHECKER_PY_PURE") == "1" else "extension"
#: What runs without the variable (the extension: asserted by the run without it).
DEFAULT_IMPLEMENTATION = "extension" if importlib.util.find_spec("tokenchecker._speedups") else "ctypes"


def test_implementation_is_the_expected_one() -> None:
    assert tokenchecker.implementation() == EXPECTED_IMPLEMENTATION
    assert tokenchecker.stats()["python"]["implementation"] == EXPECTED_IMPLEMENTATION
    if EXPECTED_IMPLEMENTATION == "extension":
        from tokenchecker import _speedups

        assert _speedups.__file__.endswith(".abi3.so")


def test_pure_setting(tmp_path: Path) -> None:
    code = "import tokenchecker; print(tokenchecker.implementation())"
    for value, want in (("1", "ctypes"), ("0", DEFAULT_IMPLEMENTATION), ("", DEFAULT_IMPLEMENTATION)):
        out = subprocess.run([sys.executable, "-c", code], env=_env(TOKENCHECKER_PY_PURE=value),
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == want, value
    bad = subprocess.run([sys.executable, "-c", code], env=_env(TOKENCHECKER_PY_PURE="yes"),
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "TOKENCHECKER_PY_PURE must be 1, 0 or unset" in bad.stderr


#: Checks n new tokens in a fresh interpreter; prints the memo's figures.
MEMO = """
import json, sys
import tokenchecker
url, tokens = sys.argv[1], sys.argv[2:]
c = tokenchecker.TokenChecker("test-client", "test-secret", ["urn:globus:auth:scope:test:all"],
                              auth_url=url, groups_url=url, verify_credentials=False)
ids = [sorted(c.check_token(t).identities) for t in tokens]
again = [sorted(c.check_token(t).identities) for t in tokens]
print(json.dumps({"ok": ids == again and all(ids), "memo": tokenchecker.stats()["python"]}))
"""


@pytest.mark.parametrize("pure", ["0", "1"])
def test_answer_memo_is_bounded_by_bytes(fake: Fake, pure: str) -> None:
    tokens = [fake.new_token(**ALICE) for _ in range(40)]

    def run(memo_bytes: str) -> Dict[str, Any]:
        out = subprocess.run([sys.executable, "-c", MEMO, fake.url, *tokens],
                             env=_env(TOKENCHECKER_PY_PURE=pure, TOKENCHECKER_MEMO_BYTES=memo_bytes),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        doc: Dict[str, Any] = json.loads(out.stdout)
        assert doc["ok"] is True
        memo: Dict[str, Any] = doc["memo"]
        assert memo["answer_memo_bytes"] <= memo["answer_memo_max_bytes"]
        return memo

    full = run("")
    assert full["answer_memo_max_bytes"] == 16 * 1024 * 1024
    assert full["answer_memo_entries"] == 40 and full["answer_memo_evictions"] == 0
    entry = full["answer_memo_bytes"] // 40
    assert entry > full["answer_memo_entry_overhead"]
    small = run(str(entry * 10))  # room for about ten entries: the oldest go first
    assert 5 <= small["answer_memo_entries"] <= 10
    # full, it admits one new entry in 8 (each evicting the oldest): 80 checks of 40 tokens
    assert 3 <= small["answer_memo_evictions"] <= 12
    off = run("0")  # no memo: every check builds its answer again, the same
    assert off["answer_memo_entries"] == 0 and off["answer_memo_bytes"] == 0
    bad = subprocess.run([sys.executable, "-c", MEMO, fake.url, tokens[0]],
                         env=_env(TOKENCHECKER_PY_PURE=pure, TOKENCHECKER_MEMO_BYTES="16M"),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "TOKENCHECKER_MEMO_BYTES must be a number of bytes" in bad.stderr


# ---- the facts come from the library ---------------------------------------------------------------


def test_statuses_come_from_the_library() -> None:
    info = tokenchecker.library_info()
    assert info["abi_version"] == tokenchecker.ABI_VERSION and info["version"] == tokenchecker.library_version()
    statuses = info["statuses"]
    for cls in (tokenchecker.InactiveTokenError, tokenchecker.InsufficientScopeError,
                tokenchecker.NotAuthorizedError, tokenchecker.AuthUnavailableError, tokenchecker.InvalidArgumentError):
        assert cls.status == statuses[cls.code]
        assert cls().status == statuses[cls.code]
        assert tokenchecker.errors.error_class(statuses[cls.code]) is cls
    assert tokenchecker.CheckerClosedError.status == -1
    # no table of numbers in the binding: the loader declares none
    from tokenchecker import _native

    assert not [name for name in vars(_native) if name.startswith("TC_")]


def test_config_keys_come_from_the_library(fake: Fake, checker: TokenChecker) -> None:
    from tokenchecker._env import ENV_KEYS

    keys = set(tokenchecker.library_info()["config_keys"])
    assert {key for _, key in ENV_KEYS} <= keys
    info = checker.info()
    assert "client_secret" not in info and info["client_id"] == checker.client_id
    assert tuple(info["expected_scopes"]) == checker.expected_scopes
    assert info["fetch_groups"] == checker.fetch_groups and info["scope_match"] == checker.scope_match
    assert info["expected_audience"] == checker.expected_audience == CLIENT_ID
    assert set(tokenchecker.library_info()["sources"]) >= {"network", "memory"}


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
    with pytest.raises(tokenchecker.InvalidArgumentError, match="off, error, warn, warning, info, debug"):
        tokenchecker.set_log_level("loud")
    # The levels come from the library (tc_library_info), "warning" as Python's name for "warn".
    assert tokenchecker.library_info()["log_levels"] == {"off": 0, "error": 1, "warn": 2, "info": 3, "debug": 4}
    tokenchecker.set_log_level("WARNING")
    tokenchecker.set_log_level("off")


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
