"""tokenchecker.apt without globus-action-provider-tools installed (this venv has none), and
TokenChecker.from_env. The releases themselves: test_apt_releases.py."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

import tokenchecker
import tokenchecker.apt as apt

from conftest import CLIENT_ID, CLIENT_SECRET, SCOPE, Fake


@pytest.mark.parametrize(
    ("version", "gen"),
    [("0.11.0", 11), ("0.11.3", 11), ("0.11.5", 11), ("0.12.0", 12), ("0.14.1", 12), ("0.18.0", 12),
     ("0.19.1", 19), ("0.20.0", 20), ("0.20.1", 20), ("0.21.0", 21), ("0.21.0rc1", 21)],
)
def test_generation_of_supported_releases(version: str, gen: int) -> None:
    assert apt.generation(version) == gen


@pytest.mark.parametrize("version", ["0.10.5", "0.22.0", "1.0.0", "0.9", "garbage", ""])
def test_unsupported_release_names_the_supported_ones(version: str) -> None:
    with pytest.raises(apt.UnsupportedReleaseError) as info:
        apt.generation(version)
    message = str(info.value)
    assert f"{version} is not supported" in message
    for release in ("0.11.x", "0.12–0.18", "0.19", "0.20", "0.21"):
        assert release in message
    assert isinstance(info.value, tokenchecker.ConfigurationError)


def test_install_without_the_package_is_a_clear_error() -> None:
    assert importlib.util.find_spec("globus_action_provider_tools") is None  # this venv has none
    with pytest.raises(apt.UnsupportedReleaseError, match="globus-action-provider-tools is not installed"):
        apt.install(auth_url="http://127.0.0.1:9", groups_url="http://127.0.0.1:9")
    assert apt.installed() is None


# ---- TokenChecker.from_env ------------------------------------------------------------------------


def _env(monkeypatch: pytest.MonkeyPatch, fake: Fake, **extra: str) -> None:
    values = {"TC_CLIENT_ID": CLIENT_ID, "TC_CLIENT_SECRET": CLIENT_SECRET, "TC_SCOPES": f"{SCOPE} openid",
              "TC_AUTH_URL": fake.url, "TC_GROUPS_URL": fake.url}
    values.update(extra)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_from_env_reads_every_variable(monkeypatch: pytest.MonkeyPatch, fake: Fake) -> None:
    _env(monkeypatch, fake)
    with tokenchecker.TokenChecker.from_env() as checker:
        assert checker.client_id == CLIENT_ID
        assert checker.expected_scopes == (SCOPE, "openid")  # TC_SCOPES is space-separated
        token = fake.new_token()
        assert checker.check(token).valid  # TC_AUTH_URL / TC_GROUPS_URL: the fake answered


def test_from_env_explicit_options_win(monkeypatch: pytest.MonkeyPatch, fake: Fake) -> None:
    # the environment names a closed port and bogus credentials: the overrides must win
    _env(monkeypatch, fake, TC_AUTH_URL="http://127.0.0.1:9", TC_GROUPS_URL="http://127.0.0.1:9",
         TC_CLIENT_SECRET="wrong-secret", TC_SCOPES="urn:other")
    overrides: Any = {"auth_url": fake.url, "groups_url": fake.url, "client_secret": CLIENT_SECRET,
                      "expected_scopes": [SCOPE], "strict": True}
    with tokenchecker.TokenChecker.from_env(**overrides) as checker:
        assert checker.strict is True
        assert checker.expected_scopes == (SCOPE,)
        assert checker.check(fake.new_token()).valid


def test_from_env_wrong_secret_in_environment_is_refused(monkeypatch: pytest.MonkeyPatch, fake: Fake) -> None:
    _env(monkeypatch, fake, TC_CLIENT_SECRET="wrong-secret")
    with pytest.raises(tokenchecker.CredentialsRejectedError):
        tokenchecker.TokenChecker.from_env()


def test_from_env_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TC_CLIENT_ID", "TC_CLIENT_SECRET", "TC_SCOPES", "TC_AUTH_URL", "TC_GROUPS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TC_CLIENT_ID", "")  # empty counts as unset
    with pytest.raises(tokenchecker.InvalidConfigError) as info:
        tokenchecker.TokenChecker.from_env(client_secret="s")
    assert "TC_CLIENT_ID" in str(info.value) and "TC_SCOPES" in str(info.value)
    assert "TC_CLIENT_SECRET" not in str(info.value)
