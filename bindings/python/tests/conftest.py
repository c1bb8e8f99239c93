"""Fixtures: the fake Globus server (the real binary), Redis and Memcached processes, checkers.

Nothing here skips: a missing binary, server or package is an error, never a silent pass.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

import tokenchecker

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
SCOPE = "urn:globus:auth:scope:test:all"
CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret"
ALICE_ID = "a11ce000-0000-4000-8000-000000000001"
ALICE_ID2 = "a11ce000-0000-4000-8000-000000000002"
BOB_ID = "b0b00000-0000-4000-8000-000000000003"
DEFAULT_ID = "d0000000-0000-4000-8000-000000000000"
GROUP_MEMBER = "11111111-1111-4111-8111-111111111111"
GROUP_ADMIN = "22222222-2222-4222-8222-222222222222"
GROUP_PENDING = "33333333-3333-4333-8333-333333333333"
TRANSFER_SCOPE = "urn:globus:auth:scope:transfer.api.globus.org:all"


def _fake_binary() -> str:
    path = os.environ.get("FAKE_GLOBUS") or str(REPO / "target" / "release" / "fake-globus")
    if not os.access(path, os.X_OK):
        raise RuntimeError(
            f"fake-globus binary not found at {path}: run `cargo build --release` or set FAKE_GLOBUS"
        )
    return path


class Fake:
    """A running fake-globus process and its control API."""

    def __init__(self, args: Optional[List[str]] = None) -> None:
        self.proc = subprocess.Popen(
            [_fake_binary(), "--exit-on-stdin-eof", *(args or [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("FAKE_GLOBUS_URL="):
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.proc.kill()
            raise RuntimeError(f"fake-globus did not start: {line!r} {err}")
        self.url = line.split("=", 1)[1]
        self.ssl_context: Any = None

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10, context=self.ssl_context) as resp:
            return json.loads(resp.read() or b"null")

    def add_tokens(self, specs: Dict[str, Dict[str, Any]]) -> None:
        self._request("POST", "/_control/tokens", specs)

    def new_token(self, **spec: Any) -> str:
        """A token unique to the caller (never cached before), active unless the spec says not."""
        token = "tok-py-" + uuid.uuid4().hex
        self.add_tokens({token: spec})
        return token

    def remove_token(self, token: str) -> None:
        self._request("DELETE", f"/_control/tokens/{token}")

    def counters(self) -> Dict[str, Any]:
        out: Dict[str, Any] = self._request("GET", "/_control/counters")
        return out

    def set_fault(self, **fault: Any) -> None:
        self._request("POST", "/_control/faults", fault)

    def clear_faults(self) -> None:
        self._request("DELETE", "/_control/faults")

    def add_client(self, client_id: str, secret: str, groups_dependency: bool = True) -> None:
        self._request(
            "POST",
            "/_control/clients",
            {"client_id": client_id, "client_secret": secret, "groups_dependency": groups_dependency},
        )

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()  # --exit-on-stdin-eof
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()


@pytest.fixture(scope="session")
def fake() -> Iterator[Fake]:
    f = Fake()
    yield f
    f.stop()


@pytest.fixture(autouse=True)
def _clear_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").clear_faults()


def make_checker(fake: Fake, **kw: Any) -> tokenchecker.TokenChecker:
    options: Dict[str, Any] = {"auth_url": fake.url, "groups_url": fake.url}
    options.update(kw)
    scopes = options.pop("expected_scopes", [SCOPE])
    return tokenchecker.TokenChecker(CLIENT_ID, CLIENT_SECRET, scopes, **options)


@pytest.fixture(scope="session")
def checker(fake: Fake) -> Iterator[tokenchecker.TokenChecker]:
    c = make_checker(fake)
    yield c
    c.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, proc: subprocess.Popen, what: str) -> None:  # type: ignore[type-arg]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port}")


def _server(argv: List[str], port: int, what: str) -> Iterator[int]:
    if shutil.which(argv[0]) is None:
        raise RuntimeError(f"{argv[0]} is not installed (the tests need a real {what})")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc, what)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def redis_port() -> Iterator[int]:
    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        yield from _server(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", d],
            port,
            "redis-server",
        )


@pytest.fixture(scope="session")
def memcached_port() -> Iterator[int]:
    port = free_port()
    yield from _server(
        ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64", "-u", "root"],
        port,
        "memcached",
    )


@pytest.fixture
def memory_cache_after(fake: Fake) -> Iterator[None]:
    """Puts the process-wide cache back to the default in-memory backend after the test."""
    yield
    make_checker(fake, cache_config={"backend": "memory"}, verify_credentials=False).close()


def raw_command(port: int, command: bytes) -> bytes:
    """One command to a Redis or Memcached server over a plain socket; the first reply chunk."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(command)
        data = b""
        while not data.endswith(b"\r\n") or (data.startswith(b"STAT") and not data.endswith(b"END\r\n")):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def introspections(fake: Fake) -> int:
    n: int = fake.counters()["introspect"]
    return n


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:  # type: ignore[type-arg]
    """A skipped test is a failure here: nothing may pass by not running."""
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    if rep.skipped and not hasattr(rep, "wasxfail"):
        rep.outcome = "failed"
        rep.longrepr = f"skipped tests count as failures in this suite: {rep.longrepr}"
