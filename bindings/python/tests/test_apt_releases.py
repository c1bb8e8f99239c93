"""``tokenchecker.apt.install()`` against the REAL globus-action-provider-tools releases.

For each pinned release: a venv (cached per release under ``$TC_APT_VENVS``, else a temporary
directory) with that release, flask and this package (a wheel built once from this source tree,
the library found through ``TOKENCHECKER_LIB_DIR``); then tests/apt/provider_check.py runs a
provider app built with that release's own ``ActionProviderBlueprint`` against the fake Globus
server, in one subprocess per release, and reports the HTTP answers it got. The assertions are
here. Nothing is skipped: a release pip cannot install is a failure (scripts/test.sh leaves this
module out only when TC_SKIP_APT_RELEASES=1 is set explicitly, and never under CI).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

import tokenchecker

from apt_pins import RELEASE_ORDER, run, venv
from conftest import ALICE_ID, HERE, Fake

PYTHON_DIR = HERE.parent
CHECK_SCRIPT = HERE / "apt" / "provider_check.py"

@pytest.fixture(scope="session")
def venvs_dir() -> Iterator[Path]:
    configured = os.environ.get("TC_APT_VENVS")
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="tc-apt-venvs.") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def lib_dir() -> str:
    return os.environ.get(tokenchecker.LIB_DIR_ENV) or str(Path(tokenchecker.library_path()).parent)


@pytest.fixture(scope="session")
def wheel(lib_dir: str) -> Iterator[Path]:
    """This package as a wheel, built once from a copy of the source tree (pip builds in the
    tree it is given; the copy keeps build/ and *.egg-info out of the checkout)."""
    with tempfile.TemporaryDirectory(prefix="tc-apt-wheel.") as d:
        src = Path(d) / "src-copy"
        src.mkdir()
        for name in ("setup.py", "pyproject.toml", "README.md"):
            shutil.copy2(PYTHON_DIR / name, src / name)
        shutil.copytree(PYTHON_DIR / "src", src / "src",
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "_lib"))
        out = Path(d) / "dist"
        # the copy is no checkout: the extension's header from the repository's include/
        env = dict(os.environ, TOKENCHECKER_LIB_DIR=lib_dir, PIP_DISABLE_PIP_VERSION_CHECK="1",
                   TOKENCHECKER_INCLUDE_DIR=str(HERE.parent.parent.parent / "include"))
        run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
             "building the tokenchecker wheel", env=env)
        wheels = sorted(out.glob("tokenchecker-*.whl"))
        assert len(wheels) == 1, wheels
        yield wheels[0]


_RESULTS: Dict[str, Dict[str, Any]] = {}


@pytest.fixture(params=RELEASE_ORDER)
def result(request: pytest.FixtureRequest, fake: Fake, venvs_dir: Path, wheel: Path, lib_dir: str) -> Dict[str, Any]:
    """What provider_check.py observed with this release (run once per release per session)."""
    release: str = request.param
    if release not in _RESULTS:
        python = venv(venvs_dir, release)
        run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
             f"installing tokenchecker into the {release} venv",
             env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"))
        env = dict(os.environ, TOKENCHECKER_LIB_DIR=lib_dir, PYTHONDONTWRITEBYTECODE="1")
        env.pop("PYTHONPATH", None)
        stdout = run([str(python), str(CHECK_SCRIPT), fake.url], f"provider_check.py with {release}",
                      timeout=180, env=env)
        lines = [ln for ln in stdout.splitlines() if ln.startswith("APT-RESULT ")]
        assert len(lines) == 1, stdout
        _RESULTS[release] = json.loads(lines[0][len("APT-RESULT "):])
    out = _RESULTS[release]
    assert out["version"] == release
    return out


ALICE = f"urn:globus:auth:identity:{ALICE_ID}"


def test_no_unexpected_exception(result: Dict[str, Any]) -> None:
    assert result["errors"] == []


def test_explicit_options_win_over_environment(result: Dict[str, Any], fake: Fake) -> None:
    # TC_AUTH_URL / TC_GROUPS_URL pointed at a closed port in the subprocess
    assert result["options"] == {"auth_url": fake.url, "groups_url": fake.url}


def test_valid_token_runs_through_the_release_blueprint(result: Dict[str, Any]) -> None:
    assert result["introspect_alice"]["status"] == 200
    assert result["introspect_alice"]["json"]["title"] == "tokenchecker apt test"
    for case in ("run_alice", "run_alice_again"):
        run = result[case]
        assert run["status"] == 202, run
        assert run["json"]["creator_id"] == ALICE
        assert run["json"]["details"]["echo"] == "hello"
        assert run["json"]["details"]["state_class"].startswith("tokenchecker.apt."), run
    # three requests with one token: one introspection (the library's cache)
    assert result["alice_introspections"] == 1


def test_group_member_may_run(result: Dict[str, Any]) -> None:
    assert result["run_carol_by_group"]["status"] == 202, result["run_carol_by_group"]


def test_caller_not_allowed_to_run_gets_the_release_answer(result: Dict[str, Any]) -> None:
    # every supported release answers UnauthorizedRequest (401) when runnable_by does not match
    answer = result["run_bob_not_allowed"]
    assert answer["status"] == 401, answer
    assert answer["json"]["code"] == "UnauthorizedRequest"


@pytest.mark.parametrize("case", ["run_inactive", "introspect_inactive", "run_no_header",
                                  "introspect_no_header", "run_wrong_scope"])
def test_unusable_token_is_401(result: Dict[str, Any], case: str) -> None:
    # 0.11/0.12 crashed with 500 without a header (they introspected ""), 0.19/0.20 on a
    # wrong-scope token, 0.20 on an inactive one: 401 here, like the releases that got it right
    answer = result[case]
    assert answer["status"] == 401, answer
    assert answer["json"]["code"] == "UnauthorizedRequest"
    assert answer["retry_after"] is None


@pytest.mark.parametrize("case", ["run_outage", "introspect_outage"])
def test_globus_outage_is_503_with_retry_after(result: Dict[str, Any], case: str) -> None:
    answer = result[case]
    assert answer["status"] == 503, answer
    assert answer["retry_after"] == "5"
    assert answer["json"]["code"] == "ServiceUnavailable"


def test_outage_is_not_cached(result: Dict[str, Any]) -> None:
    assert result["run_after_outage"]["status"] == 202, result["run_after_outage"]


def test_our_errors_are_the_release_errors(result: Dict[str, Any]) -> None:
    assert result["rejected_is_apt_authentication_error"] is True
    assert result["inactive_is_apt_authentication_error"] is True
    if result["version"] in ("0.11.3", "0.12.0"):  # releases with errors.ConfigurationError
        assert result["config_error_is_apt"] is True
    else:  # 0.14+ have no ConfigurationError any more
        assert "config_error_is_apt" not in result


def test_release_api(result: Dict[str, Any]) -> None:
    api = result["api"]
    gen = result["generation"]
    assert "exception" not in api, api
    # introspect_token() holds every member the server sent, those the library does not read too
    # (tc_answer_introspection), as the release's SDK response did
    assert {"active", "aud", "client_id", "exp", "iat", "nbf", "sub", "username", "scope", "identity_set",
            "iss", "token_type", "session_info"} <= set(api["introspect_fields"])
    assert api["introspect_session_info"] is True
    if gen in (11, 12):
        assert api["checker_class"] == "tokenchecker.apt." + (
            "CachingTokenChecker" if result["version"] <= "0.12.0" else "LegacyTokenChecker")
        assert api["introspect_data_sub"] == ALICE_ID
        assert api["introspect_item_username"] == "alice@example.org"
        assert api["introspect_scope"].split() == ["urn:globus:auth:scope:test:all", "openid"]
        assert api["introspect_identity_set"] == [ALICE_ID]
        assert api["identities"] == [ALICE]
        assert api["authorizer_token_prefix"] == "dep-"
        assert api["inactive_introspect"] is None
        assert api["inactive_identities"] == [] and api["wrong_scope_identities"] == []
        assert "CredentialsRejectedError" in api["bad_credentials"]
        assert "ConfigurationError" in api["bad_credentials"]
        if gen == 11:
            assert api["cache_config_untouched"] is True
            assert api["cache_timeout_s"] == 20
        return
    assert api["state_class"] == "tokenchecker.apt.AuthState"
    assert "globus_action_provider_tools.authentication" in api["state_mro_modules"]
    assert api["effective_identity"] == ALICE
    assert api["identities"] == [ALICE]
    assert api["introspect_data_sub"] == ALICE_ID
    assert api["introspect_item_username"] == "alice@example.org"
    assert api["group_in_principal_list"] == [True, False]
    assert api["authorizer_class"] == "AccessTokenAuthorizer"
    assert api["authorizer_token_prefix"] == "dep-"
    assert api["groups_carol"] == ["urn:globus:groups:id:44444444-4444-4444-8444-444444444444"]
    scopes = api["wrong_scope_identities"]
    assert scopes["raised"] == "InvalidTokenScopesError"
    assert scopes["expected_scopes"] == ["urn:globus:auth:scope:test:all"]
    # the token's scopes, from the library's error document (token_scopes), as the release had them
    assert scopes["actual_scopes"] == ["openid", "urn:globus:auth:scope:other:all"]
    if gen == 19:
        assert api["authorizer_missing"] == "None"
        # 0.19: an inactive token reads as None; the scopes error is raised on first read
        assert api["inactive_effective_identity"] == {"raised": None, "value": None}
        assert api["inactive_introspect"] == {"raised": None, "value": None}
        assert scopes["where"] == "read"
    else:
        assert api["authorizer_missing"].startswith("ValueError")
        where = "construction" if gen >= 21 else "read"
        for case in ("inactive_effective_identity", "inactive_introspect"):
            assert api[case]["raised"] == "InactiveTokenError", api[case]
            assert api[case]["where"] == where
            assert api[case]["is_apt_InactiveTokenError"] is True
        assert scopes["where"] == where
        assert scopes["is_apt_InvalidTokenScopesError"] is True
