"""The Flask decorator and the FastAPI dependency against bindings/contract/http.json (every
case, against fake-globus), plus what the contract does not list, and their on_error hooks."""

from __future__ import annotations

import json
import logging
import os
from importlib import resources
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
from tokenchecker.http import NoBearerTokenError

from conftest import REPO, Fake, make_checker

CONTRACT_PATH = Path(
    os.environ.get("TOKENCHECKER_HTTP_CONTRACT") or REPO / "bindings" / "contract" / "http.json"
)
CONTRACT: Dict[str, Any] = json.loads(CONTRACT_PATH.read_text())
#: The package's copy (what tokenchecker.http reads), in the source tree.
CONTRACT_COPY = Path(__file__).resolve().parent.parent / "src" / "tokenchecker" / "http_contract.json"
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
    entry = contract_entry(expect["code"], status)
    assert body == {"error": {"code": expect["code"], "message": entry["message"]}}
    assert entry["status"] == status
    assert (headers.get("www-authenticate"), headers.get("retry-after")) == contract_headers(
        entry, "api", " ".join(contract_checker_scopes())
    ), "the case disagrees with its answer"


def contract_checker_scopes() -> List[str]:
    return ["urn:globus:auth:scope:test:all"]


def contract_entry(code: str, status: int) -> Dict[str, Any]:
    """The contract's answer for a body code and status: no_bearer_token's when they are its own."""
    nb: Dict[str, Any] = CONTRACT["no_bearer_token"]
    if code == nb["code"] and status == nb["status"]:
        return nb
    answers: Dict[str, Dict[str, Any]] = CONTRACT["answers"]
    return answers[code] if code in answers else answers[CONTRACT["otherwise"]]


def contract_headers(entry: Dict[str, Any], realm: str, scopes: str) -> Tuple[Optional[str], Optional[str]]:
    """The WWW-Authenticate and Retry-After headers of an answer (None: absent)."""
    www = None
    if entry["challenge"]:
        www = f'Bearer realm="{realm}"'
        if entry["error"] is not None:
            www += ', error="' + entry["error"] + '"'
        if entry["scope"] and scopes:
            www += f', scope="{scopes}"'
    return www, str(CONTRACT["retry_after_s"]) if entry["retry_after"] else None


def test_the_package_copy_of_the_contract_is_current() -> None:
    """tokenchecker.http reads http_contract.json, a copy of bindings/contract/http.json made
    by hand (cp bindings/contract/http.json bindings/python/src/tokenchecker/): in the source
    tree and in the installed package it must be identical."""
    stale = "http_contract.json is stale: cp bindings/contract/http.json bindings/python/src/tokenchecker/"
    assert CONTRACT_COPY.read_bytes() == CONTRACT_PATH.read_bytes(), stale
    installed = resources.files("tokenchecker").joinpath("http_contract.json").read_bytes()
    assert installed == CONTRACT_PATH.read_bytes(), "the installed package's " + stale
    from tokenchecker import http

    assert http.CONTRACT == CONTRACT


def test_contract_tables_match_the_binding() -> None:
    from tokenchecker import http

    assert http.DEFAULT_REALM == CONTRACT["realm"]
    assert http.RETRY_AFTER_S == CONTRACT["retry_after_s"]
    fields = ("status", "message", "challenge", "error", "scope", "retry_after")
    assert {k: tuple(v[f] for f in fields) for k, v in CONTRACT["answers"].items()} == {
        k: tuple(v) for k, v in http.ANSWERS.items()
    }
    assert tuple(CONTRACT["no_bearer_token"][f] for f in fields) == tuple(http.NO_BEARER_TOKEN)
    assert http.NO_BEARER_TOKEN_CODE == CONTRACT["no_bearer_token"]["code"]


def test_http_error_answers_every_code_as_the_contract_says() -> None:
    from tokenchecker import errors
    from tokenchecker.http import http_error

    by_code = {cls.code: cls for cls in vars(errors).values() if isinstance(cls, type) and hasattr(cls, "code")}
    scopes = ["s1", "s2"]
    for code, entry in CONTRACT["answers"].items():
        ans = http_error(by_code[code]("internal detail"), realm="r", scopes=scopes)
        assert (ans.status, ans.code, ans.message) == (entry["status"], code, entry["message"]), code
        assert (ans.www_authenticate, ans.retry_after) == contract_headers(entry, "r", "s1 s2"), code
        assert b"internal detail" not in ans.body()
    nb = CONTRACT["no_bearer_token"]
    ans = http_error(NoBearerTokenError("detail"), realm="r", scopes=scopes)
    assert (ans.status, ans.code, ans.message) == (nb["status"], nb["code"], nb["message"])
    assert (ans.www_authenticate, ans.retry_after) == contract_headers(nb, "r", "s1 s2") == ('Bearer realm="r"', None)


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_header_edge_cases_make_no_request(
    framework: str, contract_checker: TokenChecker, fake: Fake
) -> None:
    call = FRAMEWORKS[framework](contract_checker, realm="test-api")
    before = fake.counters()["introspect"]
    # no bearer credentials: 401 with a bare challenge (RFC 6750 section 3.1)
    for auth in ([], ["Basic dGVzdDp0ZXN0"], ["Bearertok-valid"], ["Token tok-valid"], [""]):
        status, headers, body = call(auth, None)
        assert status == 401, auth
        assert body == {"error": {"code": "TC_INVALID_ARGUMENT", "message": "the request has no bearer token"}}, auth
        assert headers["www-authenticate"] == 'Bearer realm="test-api"', auth
    # malformed: 400 invalid_request
    for auth in (["Bearer"], ["Bearer "], ["Bearer\ttok-valid"], ["Bearer tok valid"], ["Bearer tok\tvalid"],
                 ["Bearer tok-valid", "Bearer tok-bob"]):
        status, headers, body = call(auth, None)
        assert status == 400, auth
        assert body == {"error": {"code": "TC_INVALID_ARGUMENT", "message": "the request's bearer token is malformed"}}
        assert headers["www-authenticate"] == 'Bearer realm="test-api", error="invalid_request"', auth
    assert fake.counters()["introspect"] == before
    status, _, body = call(["Bearer   tok-valid  "], None)  # spaces around the token are ignored
    assert status == 200


def test_bearer_token() -> None:
    from tokenchecker.http import bearer_token

    assert bearer_token(["Bearer abc"]) == "abc"
    assert bearer_token(["bEaReR \t abc \t"]) == "abc"
    assert bearer_token(['Bearer a,b"c=']) == 'a,b"c='
    for values in ([], [""], ["Basic x"], ["Bearertok"], ["Token\ttok"], ["Bearer,x"]):
        with pytest.raises(NoBearerTokenError) as info:
            bearer_token(values)
        assert info.value.code == "TC_INVALID_ARGUMENT"
        assert isinstance(info.value, tokenchecker.InvalidArgumentError)
    for values in (["Bearer"], ["Bearer  "], ["bearer\t"], ["Bearer\tabc"], ["Bearer a b"], ["Bearer a\x00b"],
                   ["Bearer a\x7fb"], ["Bearer caf\u00e9"], ["Bearer a", "Bearer a"], ["Basic x", "Bearer a"]):
        with pytest.raises(tokenchecker.InvalidArgumentError) as err:
            bearer_token(values)
        assert not isinstance(err.value, NoBearerTokenError), values


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
    assert closed.code == CONTRACT["closed"]
    other = http_error(tokenchecker.WouldBlockError("x"))
    assert other.status == 500 and other.code == "TC_WOULD_BLOCK" and other.message == "internal error"
    scoped = http_error(tokenchecker.InsufficientScopeError("x"), realm='a"b', scopes=["s1", "s2"])
    assert scoped.www_authenticate == 'Bearer realm="a\\"b", error="insufficient_scope", scope="s1 s2"'


# ---- on_error ------------------------------------------------------------------------------------

Seen = List[Tuple[Any, int, BaseException]]


def flask_app(checker: TokenChecker, on_error: Any, view_async: bool = False) -> Any:
    app = flask.Flask("on_error")
    if view_async:

        @app.get("/a")
        @authenticated(checker, on_error=on_error)
        async def a() -> Any:
            return {"user": flask.g.auth_state.username}

    else:

        @app.get("/a")
        @authenticated(checker, on_error=on_error)
        def a() -> Any:
            return {"user": flask.g.auth_state.username}

    return app.test_client()


def fastapi_app(checker: TokenChecker, on_error: Any) -> Any:
    app = fastapi.FastAPI()
    install(app)
    dep = TokenAuth(checker, on_error=on_error)

    @app.get("/a")
    async def a(state: AuthState = fastapi.Depends(dep)) -> Dict[str, Any]:  # noqa: B008
        return {"user": state.username}

    return TestClient(app)


ON_ERROR_APPS = {
    "flask": lambda c, h: flask_app(c, h),
    "flask-async": lambda c, h: flask_app(c, h, view_async=True),
    "fastapi": fastapi_app,
}


@pytest.mark.parametrize("framework", sorted(ON_ERROR_APPS))
def test_on_error_sees_request_status_and_error(framework: str, contract_checker: TokenChecker) -> None:
    seen: Seen = []

    def on_error(request: Any, status: int, err: BaseException) -> None:
        seen.append((request, status, err))

    client = ON_ERROR_APPS[framework](contract_checker, on_error)
    assert client.get("/a", headers={"Authorization": "Bearer tok-valid"}).status_code == 200
    assert seen == []
    assert client.get("/a").status_code == 401
    assert client.get("/a", headers={"Authorization": "Bearer a b"}).status_code == 400
    assert client.get("/a", headers={"Authorization": "Bearer tok-expired"}).status_code == 401
    assert [(status, type(err)) for _, status, err in seen] == [
        (401, NoBearerTokenError),
        (400, tokenchecker.InvalidArgumentError),
        (401, tokenchecker.TokenExpiredError),
    ]
    assert "no Authorization header" in str(seen[0][2])  # the detail, which the body lacks
    for request, _, _ in seen:  # the request itself, usable after the answer
        assert (request.url.path if framework == "fastapi" else request.path) == "/a"


@pytest.mark.parametrize("framework", sorted(ON_ERROR_APPS))
def test_on_error_exceptions_do_not_break_the_answer(
    framework: str, contract_checker: TokenChecker, caplog: pytest.LogCaptureFixture
) -> None:
    def on_error(request: Any, status: int, err: BaseException) -> None:
        raise RuntimeError("the hook failed")

    client = ON_ERROR_APPS[framework](contract_checker, on_error)
    with caplog.at_level(logging.ERROR, logger="tokenchecker"):
        resp = client.get("/a", headers={"Authorization": "Bearer tok-inactive"})
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == 'Bearer realm="api", error="invalid_token"'
    body = resp.json() if framework == "fastapi" else resp.get_json()
    assert body == {"error": {"code": "TC_INACTIVE_TOKEN", "message": "the token is not active"}}
    hooked = [r for r in caplog.records if "on_error raised" in r.getMessage()]
    assert len(hooked) == 1 and hooked[0].exc_info is not None
    assert str(hooked[0].exc_info[1]) == "the hook failed"


def test_on_error_must_be_a_plain_function(contract_checker: TokenChecker) -> None:
    async def coroutine(request: Any, status: int, err: BaseException) -> None:
        pass

    for bad in (coroutine, "log"):
        with pytest.raises(TypeError):
            authenticated(contract_checker, on_error=bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            TokenAuth(contract_checker, on_error=bad)  # type: ignore[arg-type]
