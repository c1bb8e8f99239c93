#!/usr/bin/env python3
"""Benchmark: tokenchecker vs the original globus-action-provider-tools 0.11.3 TokenChecker,
in the same run, against the same fake Globus server.

    python bench/bench.py [--original-python PATH] [--cached N] [--uncached N] [--rounds R]

Ours runs in this interpreter (the installed ``tokenchecker``, or src/ with
TOKENCHECKER_LIB_DIR); the original runs in its own venv (created under /tmp on first use:
``pip install globus-action-provider-tools==0.11.3``, which needs the registry), pointed at the
fake through a globus-sdk config file (``GLOBUS_SDK_ENVIRONMENT``). Not part of the test run.

Workloads (per check: ``checker.check_token(token).identities``):
  cached    one token, answered from the cache, N times
  uncached  N distinct tokens never seen before (each one introspection)
Rounds alternate ours and the original; the figures are the medians over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
SCOPE = "urn:globus:auth:scope:test:all"
DEFAULT_ORIGINAL_VENV = Path(tempfile.gettempdir()) / "tokenchecker-bench-original-venv"

ORIGINAL_SCRIPT = r"""
import json, sys, time
from globus_action_provider_tools.authentication import TokenChecker
args = json.loads(sys.argv[1])
checker = TokenChecker("test-client", "test-secret", [args["scope"]])
assert checker.check_token("tok-valid").identities, "the original does not reach the fake"
for _ in range(1000):
    checker.check_token("tok-valid").identities
n = args["cached"]
t0 = time.perf_counter()
for _ in range(n):
    checker.check_token("tok-valid").identities
cached = (time.perf_counter() - t0) / n
tokens = args["tokens"]
t0 = time.perf_counter()
for t in tokens:
    assert checker.check_token(t).identities
uncached = (time.perf_counter() - t0) / len(tokens)
print(json.dumps({"cached_s": cached, "uncached_s": uncached}))
"""


def ensure_original(python: Path | None) -> Path:
    if python is not None:
        return python
    exe = DEFAULT_ORIGINAL_VENV / "bin" / "python"
    if exe.exists():
        return exe
    print(f"creating {DEFAULT_ORIGINAL_VENV} with globus-action-provider-tools==0.11.3 ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(DEFAULT_ORIGINAL_VENV)], check=True)
    # PyYAML 5.x (required by 0.11.3) does not build with Cython 3
    constraint = DEFAULT_ORIGINAL_VENV / "constraints.txt"
    constraint.write_text("cython<3\n")
    env = dict(os.environ, PIP_CONSTRAINT=str(constraint))
    subprocess.run(
        [str(exe), "-m", "pip", "install", "-q", "globus-action-provider-tools==0.11.3"], check=True, env=env
    )
    return exe


class Fake:
    def __init__(self) -> None:
        binary = os.environ.get("FAKE_GLOBUS") or str(REPO / "target" / "release" / "fake-globus")
        self.proc = subprocess.Popen(
            [binary, "--exit-on-stdin-eof"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("FAKE_GLOBUS_URL="):
            raise SystemExit(f"fake-globus did not start: {line!r}")
        self.url = line.split("=", 1)[1]

    def add_tokens(self, n: int) -> List[str]:
        tokens = [f"tok-bench-{uuid.uuid4().hex}" for _ in range(n)]
        body = json.dumps({t: {"identity_set": [str(uuid.uuid4())]} for t in tokens}).encode()
        req = urllib.request.Request(self.url + "/_control/tokens", data=body, method="POST")
        req.add_header("Content-Type", "application/json")
        urllib.request.urlopen(req, timeout=30).read()
        return tokens

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def run_original(python: Path, fake: Fake, home: Path, cached: int, tokens: List[str]) -> Dict[str, float]:
    env = dict(os.environ, HOME=str(home), GLOBUS_SDK_ENVIRONMENT="fake")
    env.pop("PYTHONPATH", None)
    out = subprocess.run(
        [str(python), "-c", ORIGINAL_SCRIPT, json.dumps({"scope": SCOPE, "cached": cached, "tokens": tokens})],
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"the original failed:\n{out.stderr}")
    result: Dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run_ours(checker: Any, cached: int, tokens: List[str]) -> Dict[str, float]:
    for _ in range(1000):
        checker.check_token("tok-valid").identities
    t0 = time.perf_counter()
    for _ in range(cached):
        checker.check_token("tok-valid").identities
    cached_s = (time.perf_counter() - t0) / cached
    t0 = time.perf_counter()
    for t in tokens:
        assert checker.check_token(t).identities
    uncached_s = (time.perf_counter() - t0) / len(tokens)
    return {"cached_s": cached_s, "uncached_s": uncached_s}


def run_ours_extra(checker: Any, cached: int) -> Dict[str, float]:
    """Ours through the JSON result document (no answer handle), and the async cached path."""
    fast, check = checker._fast, checker._check
    checker._fast, checker._check = None, checker._check_with_json
    try:
        t0 = time.perf_counter()
        for _ in range(cached):
            checker.check_token("tok-valid").identities
        json_s = (time.perf_counter() - t0) / cached
    finally:
        checker._fast, checker._check = fast, check

    async def go() -> float:
        t0 = time.perf_counter()
        for _ in range(cached):
            (await checker.check_token_async("tok-valid")).identities
        return (time.perf_counter() - t0) / cached

    return {"json_cached_s": json_s, "async_cached_s": asyncio.run(go())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--original-python", type=Path, default=None, help="python of a venv with 0.11.3")
    ap.add_argument("--cached", type=int, default=100_000, help="cached checks per round")
    ap.add_argument("--uncached", type=int, default=300, help="new tokens per round and implementation")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args()

    import tokenchecker

    original = ensure_original(args.original_python)
    fake = Fake()
    try:
        with tempfile.TemporaryDirectory() as home:
            Path(home, ".globus.cfg").write_text(f"[environment fake]\nauth_service = {fake.url}/\n")
            checker = tokenchecker.TokenChecker(
                "test-client", "test-secret", [SCOPE], auth_url=fake.url, groups_url=fake.url
            )
            assert checker.check_token("tok-valid").identities
            ours: List[Dict[str, float]] = []
            orig: List[Dict[str, float]] = []
            extra: List[Dict[str, float]] = []
            for r in range(args.rounds):
                mine_tokens = fake.add_tokens(args.uncached)
                their_tokens = fake.add_tokens(args.uncached)
                if r % 2 == 0:
                    ours.append(run_ours(checker, args.cached, mine_tokens))
                    orig.append(run_original(original, fake, Path(home), args.cached, their_tokens))
                else:
                    orig.append(run_original(original, fake, Path(home), args.cached, their_tokens))
                    ours.append(run_ours(checker, args.cached, mine_tokens))
                extra.append(run_ours_extra(checker, args.cached))
            checker.close()
    finally:
        fake.stop()

    def med(rows: List[Dict[str, float]], key: str) -> float:
        return statistics.median(row[key] for row in rows)

    figures = {
        "cached_ours_us": med(ours, "cached_s") * 1e6,
        "cached_original_us": med(orig, "cached_s") * 1e6,
        "uncached_ours_us": med(ours, "uncached_s") * 1e6,
        "uncached_original_us": med(orig, "uncached_s") * 1e6,
        "cached_ours_json_path_us": med(extra, "json_cached_s") * 1e6,
        "cached_ours_async_us": med(extra, "async_cached_s") * 1e6,
    }
    figures["cached_ratio"] = figures["cached_original_us"] / figures["cached_ours_us"]
    figures["uncached_ratio"] = figures["uncached_original_us"] / figures["uncached_ours_us"]
    figures["cached_json_path_ratio"] = figures["cached_original_us"] / figures["cached_ours_json_path_us"]

    print(f"tokenchecker {tokenchecker.__version__} (library {tokenchecker.library_version()}) vs "
          f"globus-action-provider-tools 0.11.3; Python {sys.version.split()[0]}; "
          f"{args.rounds} alternating rounds, medians; {args.cached} cached checks and "
          f"{args.uncached} new tokens per round")
    print(f"{'check_token(t).identities':34s} {'tokenchecker':>14s} {'original':>12s} {'ratio':>8s}  target")
    print(f"{'cached':34s} {figures['cached_ours_us']:11.2f} us {figures['cached_original_us']:9.2f} us "
          f"{figures['cached_ratio']:7.1f}x  >= 5x")
    print(f"{'uncached (one introspection)':34s} {figures['uncached_ours_us']:11.1f} us "
          f"{figures['uncached_original_us']:9.1f} us {figures['uncached_ratio']:7.1f}x  >= 3x")
    print(f"{'cached, JSON document path':34s} {figures['cached_ours_json_path_us']:11.2f} us "
          f"{figures['cached_original_us']:9.2f} us {figures['cached_json_path_ratio']:7.1f}x  (for comparison)")
    print(f"{'cached, await check_token_async':34s} {figures['cached_ours_async_us']:11.2f} us")
    if args.json:
        print(json.dumps(figures))
    ok = figures["cached_ratio"] >= 5 and figures["uncached_ratio"] >= 3
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
