"""Scenarios that must run in a fresh interpreter, each printing what it found as one line
``RESULT <json>`` for test_fork.py and test_green.py to judge:

    python scenarios.py plain|gevent|eventlet FAKE_URL SCENARIO

``plain`` scenarios fork a process whose checker was created and used before the fork
(os.fork(), a multiprocessing "fork" pool): not from pytest's own process, because a library
that mishandles fork may crash or hang the parent too. ``gevent`` / ``eventlet`` ones
monkey-patch before anything else is imported, then check tokens from greenlets.

Nothing here waits without a deadline: a forked child that does not answer in time is killed
(and ends itself with SIGALRM besides) and reported as hung.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Dict, List, Optional, Tuple


def main() -> None:
    mode, url, what = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "gevent":
        from gevent import monkey

        monkey.patch_all()
    elif mode == "eventlet":
        import eventlet

        eventlet.monkey_patch()
    elif mode != "plain":
        raise SystemExit(f"unknown mode {mode!r}")
    scenarios: Dict[str, Callable[[str, str], Dict[str, Any]]] = {
        "misses": misses,
        "green-fork": green_fork,
        "fork": fork,
        "fork-in-flight": fork_in_flight,
        "fork-closed": fork_closed,
        "pool": pool,
    }
    result = scenarios[what](mode, url)
    import json

    print("RESULT " + json.dumps(result), flush=True)


# ---- helpers (imported after the monkey-patching) ------------------------------------------------


class Green:
    """The few greenlet operations the tests need, for gevent and eventlet."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        if mode == "gevent":
            import gevent

            self.spawn: Callable[..., Any] = gevent.spawn
            self.sleep: Callable[[float], None] = gevent.sleep
            self.Timeout: Any = gevent.Timeout
        else:
            import eventlet

            self.spawn = eventlet.spawn
            self.sleep = eventlet.sleep
            self.Timeout = eventlet.Timeout

    def wait(self, g: Any) -> Any:
        return g.get() if self.mode == "gevent" else g.wait()


class Control:
    def __init__(self, url: str) -> None:
        self.url = url

    def request(self, method: str, path: str, body: Any = None) -> Any:
        import json
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def tokens(self, n: int, **spec: Any) -> List[Tuple[str, str]]:
        """n new tokens, each with its own identity: [(token, identity id)]."""
        import uuid

        out = [("tok-green-" + uuid.uuid4().hex, str(uuid.uuid4())) for _ in range(n)]
        self.request("POST", "/_control/tokens", {t: dict(spec, identity_set=[i]) for t, i in out})
        return out

    def latency(self, endpoint: str, ms: int) -> None:
        self.request("POST", "/_control/faults", {"endpoint": endpoint, "latency_ms": ms})

    def clear(self) -> None:
        self.request("DELETE", "/_control/faults")

    def introspections(self) -> int:
        return int(self.request("GET", "/_control/counters")["introspect"])


def phase(green: Green, jobs: List[Callable[[], Any]]) -> Dict[str, Any]:
    """Runs the jobs in greenlets at once beside a ticker; their results (or errors), the time
    they took together, and the longest the ticker waited between two ticks (10 ms apart)."""
    import time

    done = [False]

    def ticker() -> Tuple[float, int]:
        worst, ticks = 0.0, 0
        last = time.monotonic()
        while not done[0]:
            green.sleep(0.01)
            now = time.monotonic()
            worst = max(worst, now - last)
            last = now
            ticks += 1
        return worst, ticks

    def safe(job: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            try:
                return ["ok", job()]
            except BaseException as err:  # noqa: BLE001 - reported to the test
                return ["error", f"{type(err).__name__}: {err}"]

        return run

    tick = green.spawn(ticker)
    green.sleep(0.05)  # the ticker is running
    start = time.monotonic()
    outs = [green.wait(g) for g in [green.spawn(safe(job)) for job in jobs]]
    elapsed = time.monotonic() - start
    done[0] = True
    worst, ticks = green.wait(tick)
    return {"elapsed": elapsed, "worst_gap": worst, "ticks": ticks, "results": outs}


def open_pipes() -> int:
    """Open pipe descriptors (what a cooperative wait uses; the library's connection pool may
    grow meanwhile, so not every descriptor)."""
    import os

    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
        except OSError:  # the directory's own descriptor, gone
            pass
    return n


def settled_pipes(green: Green, expect: int = -1) -> int:
    """The open pipes once the count holds still (a callback closes its write end just after
    waking its waiter), or once it is ``expect``; at most 5 s."""
    import time

    deadline = time.monotonic() + 5
    last = open_pipes()
    while time.monotonic() < deadline and last != expect:
        green.sleep(0.1)
        now = open_pipes()
        if now == last and expect < 0:
            break
        last = now
    return last


# ---- the tests -----------------------------------------------------------------------------------

SCOPE = "urn:globus:auth:scope:test:all"
TRANSFER_SCOPE = "urn:globus:auth:scope:transfer.api.globus.org:all"
GROUP = "11111111-1111-4111-8111-111111111111"
ID = "urn:globus:auth:identity:"
N = 10
LATENCY_MS = 500


def misses(mode: str, url: str) -> Dict[str, Any]:
    from functools import partial

    import tokenchecker
    from tokenchecker import _checker

    green = Green(mode)
    fake = Control(url)
    c = tokenchecker.TokenChecker("test-client", "test-secret", [SCOPE], auth_url=url, groups_url=url)
    blocking = tokenchecker.TokenChecker(
        "test-client", "test-secret", [SCOPE], auth_url=url, groups_url=url, cooperative=False,
        verify_credentials=False,
    )
    spec = {
        "dependent_tokens": [{"scope": TRANSFER_SCOPE, "resource_server": "transfer.api.globus.org"}],
        "groups": [GROUP],
    }
    out: Dict[str, Any] = {}

    # Warm-up without latency: every kind of call once (the hub's thread pool, its watchers, the
    # library's connections exist afterwards), then count the open descriptors.
    (warm, _), = fake.tokens(1, **spec)
    c.check_token(warm).identities
    c.dependent_token(warm, "transfer.api.globus.org")
    c.groups(warm)
    (warm2, warm2_id), = fake.tokens(1, **spec)
    c.authorize(warm2, [ID + warm2_id])
    c.groups(warm2)
    out["pipes_before"] = settled_pipes(green)

    def run(name: str, endpoint: str, jobs: List[Tuple[Callable[[], Any], Any]]) -> None:
        fake.latency(endpoint, LATENCY_MS)
        try:
            res = phase(green, [j for j, _ in jobs])
        finally:
            fake.clear()
        res["wrong"] = [
            [i, r] for i, (r, (_, want)) in enumerate(zip(res.pop("results"), jobs)) if r != ["ok", want]
        ]
        out[name] = res

    def identities(checker: Any, token: str) -> List[str]:
        return sorted(checker.check_token(token).identities)

    def dependent_scope(token: str) -> Any:
        return c.dependent_token(token, "transfer.api.globus.org")["scope"]

    def groups(token: str) -> List[str]:
        return sorted(c.groups(token))

    def matched(token: str, ident: str) -> Any:
        return c.authorize(token, [ID + ident]).matched_principal

    def error_code(token: str) -> str:
        try:
            c.check(token)
        except tokenchecker.TokenCheckerError as err:
            return err.code
        return "no error"

    toks = fake.tokens(N, **spec)
    run("check", "introspect", [(partial(identities, c, t), [ID + i]) for t, i in toks])
    run("dependent_token", "dependent_token", [(partial(dependent_scope, t), TRANSFER_SCOPE) for t, _ in toks])
    run("groups", "groups", [(partial(groups, t), ["urn:globus:groups:id:" + GROUP]) for t, _ in toks])
    toks = fake.tokens(N)
    run("authorize", "introspect", [(partial(matched, t, i), ID + i) for t, i in toks])
    # check() raises the typed error: inactive tokens, answered cooperatively too
    bad = fake.tokens(N, active=False)
    run("inactive", "introspect", [(partial(error_code, t), "TC_INACTIVE_TOKEN") for t, _ in bad])
    # the control: the same misses without cooperation hold the hub (they serialize)
    toks = fake.tokens(4)
    run("blocking", "introspect", [(partial(identities, blocking, t), [ID + i]) for t, i in toks])

    # A greenlet interrupted while it waits: it gets the timeout; the library's callback comes
    # later and finds the read end closed; nothing leaks; the answer is in the cache.
    (tok, ident), = fake.tokens(1)
    fake.latency("introspect", LATENCY_MS)
    try:
        try:
            with green.Timeout(0.1):
                c.check_token(tok).identities
            out["timeout"] = "not raised"
        except BaseException as err:  # noqa: BLE001 - gevent.Timeout / eventlet.Timeout
            out["timeout"] = type(err).__name__
        green.sleep(LATENCY_MS / 1000 + 0.5)  # the callback has come
    finally:
        fake.clear()
    state = c.check_token(tok)
    out["after_timeout"] = [sorted(state.identities), state.cache_source, [ID + ident]]
    out["pipes_after"] = settled_pipes(green, out["pipes_before"])
    out["pending_after"] = len(_checker._pending)
    return out


def green_fork(mode: str, url: str) -> Dict[str, Any]:
    import json
    import os
    import signal
    import time

    import tokenchecker
    from tokenchecker import AuthUnavailableError

    green = Green(mode)
    fake = Control(url)
    c = tokenchecker.TokenChecker("test-client", "test-secret", [SCOPE], auth_url=url, groups_url=url)
    (warm, _), (tok, ident), (child_tok, child_ident) = fake.tokens(3)
    c.check_token(warm).identities  # the runtime and the connections are live

    def waiter() -> Any:
        try:
            return ["ok", sorted(c.check_token(tok).identities)]
        except AuthUnavailableError as err:
            return ["AuthUnavailableError", str(err)]

    fake.request("POST", "/_control/faults", {"endpoint": "introspect", "latency_ms": 1500, "count": 1})
    before = fake.introspections()
    g = green.spawn(waiter)
    deadline = time.monotonic() + 10
    while fake.introspections() == before and time.monotonic() < deadline:
        green.sleep(0.01)  # until the request is at the fake, which holds it for 1.5 s
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return
        code = 1
        try:
            signal.alarm(20)  # a hang ends the child (SIGALRM's default action)
            os.close(r)
            t0 = time.monotonic()
            report = {"waiter": green.wait(g), "waiter_s": time.monotonic() - t0}
            os.write(w, (json.dumps(report) + "\n").encode())  # reported even if what follows hangs
            report = {"new": sorted(c.check_token(child_tok).identities), "new_want": [ID + child_ident]}
            os.write(w, (json.dumps(report) + "\n").encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    parent = green.wait(g)
    chunks = []
    end = time.monotonic() + 30
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        green.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        status = -1
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    child: Dict[str, Any] = {}
    for line in b"".join(chunks).splitlines():
        child.update(json.loads(line))
    return {"parent": parent, "parent_want": [ID + ident], "child_status": status, "child": child}


# ---- plain fork ----------------------------------------------------------------------------------

Tokens = List[Tuple[str, str]]


def checker(url: str, **options: Any) -> Any:
    import tokenchecker

    return tokenchecker.TokenChecker("test-client", "test-secret", [SCOPE], auth_url=url, groups_url=url, **options)


def check_all(c: Any, tokens: Tokens, threads: int = 8) -> List[Any]:
    """[token, identities, cache source] of each token (or [token, error]), from several threads."""
    from concurrent.futures import ThreadPoolExecutor

    def one(item: Tuple[str, str]) -> List[Any]:
        try:
            state = c.check(item[0])
            return [item[0], sorted(state.identities), state.cache_source]
        except Exception as err:  # noqa: BLE001 - reported to the test
            return [item[0], f"{type(err).__name__}: {err}"]

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(one, tokens))


def in_child(fn: Callable[[], Any], timeout: float) -> Dict[str, Any]:
    """Runs ``fn`` in a forked child: ``{"ok": True, "value": …}``, ``{"ok": False, "error": …}``
    or, when it gave no answer within ``timeout`` s (it is then killed), ``{"hung": …}``."""
    import json
    import os
    import select
    import signal
    import time
    import traceback

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: reports through the pipe, never returns
        code = 70
        try:
            os.close(r)
            signal.alarm(int(timeout) + 5)  # the last resort: SIGALRM's default action ends it
            try:
                payload: Dict[str, Any] = {"ok": True, "value": fn()}
            except BaseException as err:  # noqa: BLE001 - reported to the parent
                payload = {"ok": False, "error": f"{type(err).__name__}: {err}", "tb": traceback.format_exc()}
            data = json.dumps(payload).encode()
            while data:
                data = data[os.write(w, data):]
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    chunks: List[bytes] = []
    start = time.monotonic()
    deadline = start + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
            if ready:
                chunk = os.read(r, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(r)
    status: Optional[int] = None
    while time.monotonic() < deadline + 2:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
            break
        time.sleep(0.02)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    raw = b"".join(chunks)
    if not raw and status is not None and os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        why = "hung (ended by its own alarm)" if name == "SIGALRM" else "crashed"
        return {"hung": f"the child {why}: killed by {name} after {time.monotonic() - start:.1f} s, no answer"}
    if not raw:
        return {"hung": f"the child gave no answer within {timeout:.0f} s (wait status {status}; None: it was killed)"}
    out: Dict[str, Any] = json.loads(raw)
    out["seconds"] = time.monotonic() - start
    return out


def fork(mode: str, url: str) -> Dict[str, Any]:
    """A checker created and used in the parent; in the child: the first miss, a hit, the
    parent's token, many tokens from threads, inactive tokens, a checker created there. Then
    the parent again."""
    fake = Control(url)
    c = checker(url)  # verify_credentials: creation itself made a request
    (parent_tok, parent_id), = fake.tokens(1)
    out: Dict[str, Any] = {"parent_id": parent_id, "before": sorted(c.check(parent_tok).identities)}
    first, many = fake.tokens(1), fake.tokens(240)
    inactive, for_new_checker, after = fake.tokens(20, active=False), fake.tokens(20), fake.tokens(40)
    out["tokens"] = {"first": first, "many": many, "for_new_checker": for_new_checker, "after": after}

    def child() -> Dict[str, Any]:
        import tokenchecker

        got: Dict[str, Any] = {}
        tok = first[0][0]
        state = c.check(tok)  # the child's first miss
        got["first"] = [tok, sorted(state.identities), state.cache_source]
        hit = c.check(tok)
        got["first_again"] = [tok, sorted(hit.identities), hit.cache_source]
        parent = c.check(parent_tok)  # the parent's cached token
        got["parent_tok"] = [sorted(parent.identities), parent.cache_source]
        got["many"] = check_all(c, many)
        got["many_again"] = check_all(c, many)
        states = [c.check_token(t) for t, _ in inactive]
        got["inactive"] = [[sorted(st.identities), type(st.error).__name__] for st in states]
        try:
            c.check(inactive[0][0])
            got["inactive_raises"] = "no error"
        except tokenchecker.TokenCheckerError as err:
            got["inactive_raises"] = err.code
        created = checker(url)  # a checker created in the child
        got["new_checker"] = check_all(created, for_new_checker)
        created.close()
        return got

    out["child"] = in_child(child, timeout=30)
    again = c.check(parent_tok)  # the parent after the child exited: its cache, new misses
    out["parent_again"] = [sorted(again.identities), again.cache_source]
    out["after"] = check_all(c, after)
    c.close()
    return out


def fork_in_flight(mode: str, url: str) -> Dict[str, Any]:
    """Forks while 4 threads of the parent wait for misses (held 1.5 s at the fake); the child
    checks those same tokens (the parent's in-flight table came along) and 120 new ones."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    fake = Control(url)
    c = checker(url, verify_credentials=False)
    (warm, _), = fake.tokens(1)
    c.check(warm)
    busy, fresh = fake.tokens(4), fake.tokens(120)
    out: Dict[str, Any] = {"tokens": {"busy": busy, "fresh": fresh}}
    # the parent's 4 misses wait 1.5 s at the fake; the requests after them are answered at once
    fake.request("POST", "/_control/faults", {"endpoint": "introspect", "latency_ms": 1500, "count": 4})
    before = fake.introspections()
    with ThreadPoolExecutor(max_workers=4) as threads:
        parent = threads.map(lambda item: [item[0], sorted(c.check(item[0]).identities), "-"], busy)
        deadline = time.monotonic() + 10
        while fake.introspections() - before < 4:  # all four are at the fake now
            if time.monotonic() > deadline:
                raise RuntimeError("the parent's misses never reached the fake")
            time.sleep(0.005)
        out["in_flight_at_fork"] = fake.introspections() - before
        out["child"] = in_child(lambda: {"busy": check_all(c, busy, 4), "fresh": check_all(c, fresh)}, 30)
        out["parent"] = list(parent)
    fake.clear()
    c.close()
    return out


def fork_closed(mode: str, url: str) -> Dict[str, Any]:
    """A state resolved before the fork keeps its answer in the child; a checker closed before
    stays closed; the open one checks new tokens."""
    fake = Control(url)
    c = checker(url, verify_credentials=False)
    (tok, ident), = fake.tokens(1)
    state = c.check_token(tok)
    out: Dict[str, Any] = {"ident": ident, "before": sorted(state.identities)}
    other = checker(url, verify_credentials=False)
    other.close()
    later = fake.tokens(30)
    out["tokens"] = later
    out["child"] = in_child(
        lambda: {"state": sorted(state.identities), "closed": other.closed, "later": check_all(c, later)}, 30
    )
    c.close()
    return out


_pool_checker: Any = None
_pool_barrier: Any = None


def _pool_check(job: Tuple[int, str]) -> List[Any]:
    import os

    i, tok = job
    if i < 3:  # the first three jobs: one per worker, at the same time (each waits for the others)
        _pool_barrier.wait(timeout=30)
    state = _pool_checker.check(tok)
    return [tok, sorted(state.identities), state.cache_source, os.getpid()]


def pool(mode: str, url: str) -> Dict[str, Any]:
    """A multiprocessing "fork" pool of 3 workers checks 300 tokens with the parent's checker."""
    import multiprocessing
    import os

    global _pool_checker, _pool_barrier
    fake = Control(url)
    ctx = multiprocessing.get_context("fork")
    c = checker(url)
    (warm, warm_id), = fake.tokens(1)
    out: Dict[str, Any] = {"warm": [sorted(c.check(warm).identities), [ID + warm_id]], "pid": os.getpid()}
    tokens = fake.tokens(300)
    out["tokens"] = tokens
    _pool_checker, _pool_barrier = c, ctx.Barrier(3)
    workers = ctx.Pool(3)
    try:
        pending = workers.map_async(_pool_check, [(i, t) for i, (t, _) in enumerate(tokens)], chunksize=1)
        try:
            out["results"] = pending.get(timeout=30)
        except multiprocessing.TimeoutError:
            out["hung"] = "the pool's forked workers gave no answer within 30 s"
        except Exception as err:  # noqa: BLE001 - reported to the test
            out["error"] = f"{type(err).__name__}: {err}"
    finally:
        workers.terminate()
        workers.join()
    out["parent_again"] = c.check(warm).cache_source
    c.close()
    return out


if __name__ == "__main__":
    main()
