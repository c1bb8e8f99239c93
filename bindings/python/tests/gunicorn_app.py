"""The Flask app that test_fork.py serves with gunicorn (``gunicorn --preload gunicorn_app:app``).

The checker is created, and used for one cache miss, at import: with ``--preload`` that is in
gunicorn's master, before it forks the workers, so every worker starts with a checker whose
runtime, connections and cache were the master's. Reads ``TC_TEST_FAKE_URL`` (fake-globus).
"""

from __future__ import annotations

import os
from typing import Any, Dict

import flask

from tokenchecker import TokenChecker
from tokenchecker.flask import authenticated

FAKE_URL = os.environ["TC_TEST_FAKE_URL"]
MASTER_PID = os.getpid()

checker = TokenChecker(
    "test-client",
    "test-secret",
    ["urn:globus:auth:scope:test:all"],
    auth_url=FAKE_URL,
    groups_url=FAKE_URL,
)
# A miss answered in the master: its runtime and connection pool are live when the workers fork.
if not checker.check_token("tok-valid").identities:
    raise RuntimeError("gunicorn_app: tok-valid was not accepted in the master")

app = flask.Flask(__name__)


@app.get("/health")
def health() -> Dict[str, Any]:
    return {"ok": True, "pid": os.getpid()}


@app.get("/whoami")
@authenticated(checker)
def whoami() -> Dict[str, Any]:
    state = flask.g.auth_state
    return {
        "identities": sorted(state.identities),
        "source": state.cache_source,
        "pid": os.getpid(),
        "master": MASTER_PID,
    }
