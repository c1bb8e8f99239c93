"""Forked workers: a checker created (and used) before fork() answers in the child.

os.fork(), multiprocessing's "fork" start method and gunicorn --preload (sync and gevent
workers), each with many distinct tokens. The forking process is never pytest's own (a library
that mishandles fork can crash or hang the parent too): it is tests/scenarios.py or gunicorn, in
a process group of its own, killed when it passes its deadline. A forked child that does not
answer in time is killed too and reported as hung; gunicorn's clients have timeouts and stop at
the first failure. A hang is a failure naming what did not answer, never a hung suite.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import gunicorn.config
import pytest

from tokenchecker import identity_principal

from conftest import HERE, Fake, free_port, wait_port

Tokens = List[Tuple[str, str]]


def new_tokens(fake: Fake, n: int, **spec: Any) -> Tokens:
    """n new tokens, each with its own identity: [(token, identity id)]."""
    out = [("tok-fork-" + uuid.uuid4().hex, str(uuid.uuid4())) for _ in range(n)]
    fake.add_tokens({t: dict(spec, identity_set=[i]) for t, i in out})
    return out


def wrong_answers(results: List[Any], tokens: Tokens) -> List[Any]:
    """The [token, identities, source] results whose identities are not exactly the token's own."""
    want = {t: [identity_principal(i)] for t, i in tokens}
    return [r for r in results if len(r) < 3 or r[1] != want[r[0]]]


def kill_group(pgid: int) -> None:
    """SIGKILL to what is left of a process group the tests started (nothing: fine)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_scenario(mode: str, url: str, what: str, timeout: float = 60) -> Dict[str, Any]:
    """Runs ``tests/scenarios.py MODE URL WHAT`` in a fresh interpreter (its own process group,
    killed with whatever it forked after ``timeout`` s) and returns its result."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "scenarios.py"), mode, url, what],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        stdout, stderr = proc.communicate()
        pytest.fail(f"scenarios.py {mode} {what} gave no answer within {timeout:.0f} s: it hung\n{stderr}")
    kill_group(proc.pid)  # anything it forked and left behind
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    what_happened = (
        f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
    )
    assert proc.returncode == 0 and lines, f"scenarios.py {mode} {what}: {what_happened}\n{stdout}\n{stderr}"
    out: Dict[str, Any] = json.loads(lines[-1][len("RESULT "):])
    return out


def child_value(got: Dict[str, Any]) -> Any:
    """What the forked child returned; a failure naming what went wrong in it otherwise."""
    child = got["child"]
    if "hung" in child:
        pytest.fail(f"the forked child gave no answer: {child['hung']}")
    if not child["ok"]:
        pytest.fail(f"the forked child failed: {child['error']}\n{child['tb']}")
    return child["value"]


# ---- os.fork() -----------------------------------------------------------------------------------


def test_os_fork_child_checks_and_parent_still_works(fake: Fake) -> None:
    got = run_scenario("plain", fake.url, "fork")
    toks = got["tokens"]
    parent_principal = [identity_principal(got["parent_id"])]
    assert got["before"] == parent_principal  # a miss answered in the parent before the fork
    child = child_value(got)
    assert wrong_answers([child["first"]], toks["first"]) == []
    assert child["first"][2] == "network"  # the child's first miss
    assert child["first_again"][2] == "memory"
    assert child["parent_tok"] == [parent_principal, "network"], "the child starts with an empty in-process cache"
    assert wrong_answers(child["many"], toks["many"]) == []
    assert {r[2] for r in child["many"]} == {"network"}
    assert wrong_answers(child["many_again"], toks["many"]) == []
    assert {r[2] for r in child["many_again"]} == {"memory"}
    assert child["inactive"] == [[[], "InactiveTokenError"]] * 20  # the original's empty set, the typed error
    assert child["inactive_raises"] == "TC_INACTIVE_TOKEN"
    assert wrong_answers(child["new_checker"], toks["for_new_checker"]) == []
    # the parent after the child exited: its cache, and new misses
    assert got["parent_again"] == [parent_principal, "memory"]
    assert wrong_answers(got["after"], toks["after"]) == []
    assert {r[2] for r in got["after"]} == {"network"}


def test_fork_while_parent_threads_are_in_misses(fake: Fake) -> None:
    got = run_scenario("plain", fake.url, "fork-in-flight")
    assert got["in_flight_at_fork"] == 4
    child = child_value(got)
    assert wrong_answers(child["busy"], got["tokens"]["busy"]) == []
    assert wrong_answers(child["fresh"], got["tokens"]["fresh"]) == []
    assert wrong_answers(got["parent"], got["tokens"]["busy"]) == []


def test_fork_with_a_closed_checker_and_states(fake: Fake) -> None:
    got = run_scenario("plain", fake.url, "fork-closed")
    principal = [identity_principal(got["ident"])]
    assert got["before"] == principal
    child = child_value(got)
    assert child["state"] == principal and child["closed"] is True
    assert wrong_answers(child["later"], got["tokens"]) == []


# ---- multiprocessing "fork" ----------------------------------------------------------------------


def test_multiprocessing_fork_pool(fake: Fake) -> None:
    got = run_scenario("plain", fake.url, "pool")
    assert got["warm"][0] == got["warm"][1]
    assert "hung" not in got and "error" not in got, got.get("hung") or got.get("error")
    results = got["results"]
    assert len(results) == 300
    assert wrong_answers([r[:3] for r in results], got["tokens"]) == []
    pids = {r[3] for r in results}
    assert len(pids) == 3 and got["pid"] not in pids, "all three forked workers answered"
    assert got["parent_again"] == "memory"  # the parent's own cache


# ---- gunicorn --preload --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def solo_fake() -> Iterator[Fake]:
    """A fake of its own: the latency tests read its max_concurrent counter."""
    f = Fake()
    yield f
    f.stop()


def reset(fake: Fake) -> None:
    fake._request("POST", "/_control/reset")


@contextmanager
def serve(fake: Fake, tmp_path: Path, *args: str) -> Iterator[Tuple[str, Path]]:
    """gunicorn --preload serving tests/gunicorn_app.py on 127.0.0.1 (its own process group):
    its base URL and its log file. Stopped (and killed if need be) on exit."""
    port = free_port()
    log = tmp_path / "gunicorn.log"
    cmd = [
        sys.executable, "-m", "gunicorn", "--preload", "-b", f"127.0.0.1:{port}", "--chdir", str(HERE),
        "--timeout", "20", "--graceful-timeout", "3", "--log-level", "info", *args, "gunicorn_app:app",
    ]
    if any(s.name == "control_socket_disable" for s in gunicorn.config.KNOWN_SETTINGS):
        cmd.insert(-1, "--no-control-socket")  # gunicorn >= 24 would listen on ~/.gunicorn/gunicorn.ctl
    env = dict(os.environ, TC_TEST_FAKE_URL=fake.url)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        try:
            wait_port(port, proc, "gunicorn")
            get(f"http://127.0.0.1:{port}/health", timeout=20)  # a worker is up (no check in it)
        except (RuntimeError, OSError) as err:
            raise RuntimeError(f"gunicorn did not serve: {err}\n{log.read_text(errors='replace')}") from None
        yield f"http://127.0.0.1:{port}", log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid)  # the master and its workers
            proc.wait()
        kill_group(proc.pid)  # a worker the master left behind


def get(url: str, token: Optional[str] = None, timeout: float = 15) -> Tuple[int, Any]:
    req = urllib.request.Request(url)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def fire(url: str, jobs: List[Tuple[str, int, Optional[str]]], threads: int, deadline_s: float) -> List[Any]:
    """GET url for each (token, expected status, expected identity) from a pool of threads;
    after the first failure (or the deadline) the rest are not sent. [(job, status, body | error)]."""
    stop = threading.Event()
    deadline = time.monotonic() + deadline_s

    def one(job: Tuple[str, int, Optional[str]]) -> List[Any]:
        if stop.is_set() or time.monotonic() > deadline:
            return [job, None, "not sent (an earlier request failed, or the deadline passed)"]
        try:
            status, body = get(url, job[0])
        except Exception as err:  # noqa: BLE001 - a timeout, a reset connection
            stop.set()
            return [job, None, f"{type(err).__name__}: {err}"]
        ok = status == job[1] and (job[2] is None or body.get("identities") == [job[2]])
        if not ok:
            stop.set()
        return [job, status, body]

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(one, jobs))


def failures(results: List[Any]) -> List[Any]:
    return [
        r for r in results
        if r[1] != r[0][1] or (r[0][2] is not None and r[2].get("identities") != [r[0][2]])
    ]


def test_gunicorn_preload_sync_workers(fake: Fake, tmp_path: Path) -> None:
    valid = new_tokens(fake, 120)
    inactive = new_tokens(fake, 30, active=False)
    jobs: List[Tuple[str, int, Optional[str]]] = []
    for _ in range(2):
        jobs += [(t, 200, identity_principal(i)) for t, i in valid]
        jobs += [(t, 401, None) for t, _ in inactive]
    with serve(fake, tmp_path, "-w", "3") as (url, log):
        results = fire(url + "/whoami", jobs, threads=16, deadline_s=60)
    text = log.read_text(errors="replace")
    bad = failures(results)
    assert bad == [], f"{len(bad)} of {len(jobs)} requests failed, e.g. {bad[:3]}\n--- gunicorn log ---\n{text}"
    assert len(jobs) == 300
    pids = {r[2]["pid"] for r in results if r[1] == 200}
    masters = {r[2]["master"] for r in results if r[1] == 200}
    assert len(masters) == 1 and not pids & masters  # checked in the workers, created in the master
    assert len(pids) >= 2, "the requests were served by more than one worker"
    assert "WORKER TIMEOUT" not in text, text
    assert len(re.findall(r"Booting worker with pid", text)) == 3, f"a worker was restarted:\n{text}"
    for r in results:
        if r[1] == 401:
            assert r[2]["error"]["code"] == "TC_INACTIVE_TOKEN"


def test_gunicorn_gevent_worker_overlaps_misses(solo_fake: Fake, tmp_path: Path) -> None:
    fake = solo_fake
    n = 20
    with serve(fake, tmp_path, "-w", "1", "-k", "gevent", "--worker-connections", "100") as (url, log):
        (warm, warm_id), = new_tokens(fake, 1)
        try:  # the worker's first miss, without latency
            status, body = get(url + "/whoami", warm, timeout=20)
        except OSError as err:
            pytest.fail(f"the gevent worker's first check gave no answer: {err}\n{log.read_text(errors='replace')}")
        assert (status, body and body.get("identities")) == (200, [identity_principal(warm_id)])
        tokens = new_tokens(fake, n)
        reset(fake)
        fake.set_fault(endpoint="introspect", latency_ms=500)
        barrier = threading.Barrier(n)

        def one(item: Tuple[str, str]) -> List[Any]:
            barrier.wait(timeout=10)
            try:
                return [item[0], *get(url + "/whoami", item[0], timeout=20)]
            except Exception as err:  # noqa: BLE001 - reported below
                return [item[0], None, f"{type(err).__name__}: {err}"]

        start = time.monotonic()
        try:
            with ThreadPoolExecutor(max_workers=n) as pool:
                results = list(pool.map(one, tokens))
        finally:
            fake.clear_faults()
        elapsed = time.monotonic() - start
    text = log.read_text(errors="replace")
    want = {t: [identity_principal(i)] for t, i in tokens}
    bad = [r for r in results if r[1] != 200 or r[2].get("identities") != want[r[0]]]
    assert bad == [], f"{bad[:3]}\n--- gunicorn log ---\n{text}"
    assert len({r[2]["pid"] for r in results}) == 1  # one worker served them all
    # 20 misses of 0.5 s each: one after the other they take 10 s
    assert elapsed < 5, f"{n} misses took {elapsed:.2f} s in one gevent worker: they did not overlap"
    assert fake.counters()["max_concurrent"]["introspect"] >= n // 2
    assert "WORKER TIMEOUT" not in text, text


# ---- gevent: fork while a greenlet waits ---------------------------------------------------------


def test_gevent_fork_while_a_greenlet_waits(solo_fake: Fake) -> None:
    got = run_scenario("gevent", solo_fake.url, "green-fork")
    assert got["parent"] == ["ok", got["parent_want"]]  # the parent's own answer, not the child's
    child = got["child"]
    # the child's copy of the waiting greenlet: the parent's runtime will not answer it there,
    # so it gets an error at once instead of waiting forever
    assert child.get("waiter", [None])[0] == "AuthUnavailableError", got
    assert child["waiter_s"] < 1
    status = got["child_status"]
    assert status == 0, f"the child did not finish (wait status {status}, 14: its alarm ended it): {got}"
    assert child["new"] == child["new_want"]  # then a new check in the child
