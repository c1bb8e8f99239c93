"""The Flask decorator and the FastAPI dependency against bindings/contract/http.json (every
case, against fake-globus), plus what the contract does not list."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import fastapi
import flask
import pytest
from fastapi.testclient import TestClient

import tokenchecker
from tokenchecker import AuthState, TokenChecker
from tokenchecker.fastapi import TokenAuth, install
from tokenchecker.flask import authenticated

from conftest import REPO, Fake, make_checker

CONTRACT_PATH = Path(
    os.environ.get("TOKENCHECKER_HTTP_CONTRACT") or REPO / "bindings" / "contract" / "http.json"
)
CONTRACT: Dict[str, Any] = json.loads(CONTRACT_PATH.read_text())
CASES: List[Dict[str, Any]] = CONTRACT["cases"]
ROUTES: List[Optional[List[str]]] = [None]
ROUTES += [c["request"]["require"] for c in CASES if "require" in c["request"]]

# (status, headers, body) for (authorization header values, allowed principals or None)
Client = Callable[[List[str], Optional[List[str]]], Tuple[int, Dict[str, str], Any]]


@pytest.fixture(scope="module")
def contract_checker(fake: Fake) -> Iterator[TokenChecker]:
    c = make_checker(fake, expected_scopes=["urn:globus:auth:scope:test:all"], verify_credentials=False)
    yield c
    c.close()


def flask_client(checker: TokenChecker, realm: str = "api") -> Client:
    app = flask.Flask("contract")
    routes: Dict[Tuple[str, ...], str] = {}

    def route(principals: Optional[List[str]]) -> str:
        key = tuple(principals) if principals is not None else ("<none>",)
        if key not in routes:
            name = f"r{len(routes)}"

            @authenticated(checker, allowed_principals=principals, realm=realm)
            def view() -> Any:
                state: AuthState = flask.g.auth_state
                return {"effective_identity": state.effective_identity}

            app.add_url_rule(f"/{name}", name, view)
            routes[key] = name
        return routes[key]

    for principals in ROUTES:  # Flask wants every route before the first request
        route(principals)
    client = app.test_client()

    def call(auth: List[str], principals: Optional[List[str]]) -> Tuple[int, Dict[str, str], Any]:
        headers = [("Authorization", a) for a in auth]
        resp = client.get("/" + route(principals), headers=headers)
        return resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, resp.get_json(silent=True)

    return call


def fastapi_client(checker: TokenChecker, realm: str = "api") -> Client:
    app = fastapi.FastAPI()
    install(app)
    routes: Dict[Tuple[str, ...], str] = {}

    def route(principals: Optional[List[str]]) -> str:
        key = tuple(principals) if principals is not None else ("<none>",)
        if key not in routes:
            name = f"r{len(routes)}"
            dep = TokenAuth(checker, allowed_principals=principals, realm=realm)

            async def view(state: AuthState = fastapi.Depends(dep)) -> Dict[str, Any]:  # noqa: B008
                return {"effective_identity": state.effective_identity}

            app.add_api_route(f"/{name}", view, methods=["GET"])
            routes[key] = name
        return routes[key]

    client = TestClient(app)

    def call(auth: List[str], principals: Optional[List[str]]) -> Tuple[int, Dict[str, str], Any]:
        path = "/" + route(principals)
        headers = [("authorization", a) for a in auth]
        resp = client.get(path, headers=headers)
        try:
            body = resp.json()
        except ValueError:
            body = None
        return resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, body

    return call


FRAMEWORKS = {"flask": flask_client, "fastapi": fastapi_client}


@pytest.fixture(scope="module", params=sorted(FRAMEWORKS))
def client(request: pytest.FixtureRequest, contract_checker: TokenChecker) -> Client:
    return FRAMEWORKS[request.param](contract_checker)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_contract(case: Dict[str, Any], client: Client, fake: Fake) -> None:
    req, expect = case["request"], case["expect"]
    token = req.get("token")
    if token == "fresh":
        token = fake.new_token()
    if "authorization" in req:
        auth = [req["authorization"]]
    elif token is not None:
        auth = [f"Bearer {token}"]
    else:
        auth = []
    if "fault" in req:
        fake.set_fault(**req["fault"])
    status, headers, body = client(auth, req.get("require"))
    assert status == expect["status"], body
    assert headers.get("www-authenticate") == expect["www_authenticate"]
    assert headers.get("retry-after") == expect["retry_after"]
    if expect["code"] is None:
        assert body["effective_identity"].startswith("urn:globus:auth:identity:")
        return
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert body == {"error": {"code": expect["code"], "message": CONTRACT["messages"][expect["code"]]}}
    assert CONTRACT["statuses"][expect["code"]] == status


def test_contract_tables_match_the_binding() -> None:
    from tokenchecker.http import HTTP_ERRORS, RETRY_AFTER_S

    assert {k: v[0] for k, v in HTTP_ERRORS.items()} == CONTRACT["statuses"]
    assert {k: v[1] for k, v in HTTP_ERRORS.items()} == CONTRACT["messages"]
    assert RETRY_AFTER_S == CONTRACT["retry_after_s"]


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_header_edge_cases_make_no_request(
    framework: str, contract_checker: TokenChecker, fake: Fake
) -> None:
    call = FRAMEWORKS[framework](contract_checker, realm="test-api")
    before = fake.counters()["introspect"]
    for auth in (["Bearer"], ["Bearer\ttok-valid"], ["Bearertok-valid"], ["Token tok-valid"],
                 ["Bearer tok-valid", "Bearer tok-bob"]):
        status, headers, body = call(auth, None)
        assert status == 401, auth
        assert body["error"]["code"] == "TC_INVALID_ARGUMENT"
        assert headers["www-authenticate"] == 'Bearer realm="test-api", error="invalid_request"'
    assert fake.counters()["introspect"] == before
    status, _, body = call(["Bearer   tok-valid  "], None)  # spaces around the token are ignored
    assert status == 200


def test_fastapi_without_install_keeps_status_and_headers(contract_checker: TokenChecker) -> None:
    app = fastapi.FastAPI()
    dep = TokenAuth(contract_checker)

    @app.get("/x")
    async def x(state: AuthState = fastapi.Depends(dep)) -> Dict[str, Any]:  # noqa: B008
        return {}

    resp = TestClient(app).get("/x", headers={"authorization": "Bearer tok-inactive"})
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == 'Bearer realm="api", error="invalid_token"'
    assert resp.json()["detail"]["error"]["code"] == "TC_INACTIVE_TOKEN"


def test_flask_async_view(contract_checker: TokenChecker) -> None:
    app = flask.Flask("async")

    @app.get("/a")
    @authenticated(contract_checker, allowed_principals=["all_authenticated_users"],
                   allow_all_authenticated_users=True)
    async def a() -> Any:
        return {"user": flask.g.auth_state.username}

    client = app.test_client()
    ok = client.get("/a", headers={"Authorization": "Bearer tok-valid"})
    assert ok.get_json() == {"user": "alice@example.org"}
    assert client.get("/a", headers={"Authorization": "Bearer tok-expired"}).status_code == 401


def test_http_error_for_unexpected_exceptions() -> None:
    from tokenchecker.http import http_error

    ans = http_error(RuntimeError("boom"))
    assert (ans.status, ans.code, ans.message) == (500, "TC_PANIC", "internal error")
    closed = http_error(tokenchecker.CheckerClosedError("closed"))
    assert closed.status == 503 and closed.retry_after == "5"
    other = http_error(tokenchecker.WouldBlockError("x"))
    assert other.status == 500 and other.code == "TC_WOULD_BLOCK"
    scoped = http_error(tokenchecker.InsufficientScopeError("x"), realm='a"b', scopes=["s1", "s2"])
    assert scoped.www_authenticate == 'Bearer realm="a\\"b", error="insufficient_scope", scope="s1 s2"'
