"""Runs INSIDE a venv holding one pinned globus-action-provider-tools release, flask and
tokenchecker (see tests/test_apt_releases.py, which starts it once per release).

    provider_check.py FAKE_URL

It calls ``tokenchecker.apt.install(auth_url=FAKE_URL, groups_url=FAKE_URL)`` first (with
TC_AUTH_URL / TC_GROUPS_URL pointing at a dead port, so the explicit options must win), builds a
provider app with that release's own ``ActionProviderBlueprint``, sends real requests through
Flask's test client (the tokens checked by the library against the fake Globus server), exercises
the release's direct API, and prints one JSON document of what it observed. It asserts nothing:
the pytest module does.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import urllib.request
import uuid
from typing import Any, Callable, Dict, Optional

FAKE = sys.argv[1]
SCOPE = "urn:globus:auth:scope:test:all"
TRANSFER_SCOPE = "urn:globus:auth:scope:transfer.api.globus.org:all"
CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret"
ALICE_ID = "a11ce000-0000-4000-8000-000000000001"
BOB_ID = "b0b00000-0000-4000-8000-000000000003"
CAROL_ID = "ca401000-0000-4000-8000-000000000004"
RUN_GROUP = "44444444-4444-4444-8444-444444444444"

# The explicit options of install() must win over these (a closed port: 503 everywhere if not).
os.environ["TC_AUTH_URL"] = "http://127.0.0.1:9"
os.environ["TC_GROUPS_URL"] = "http://127.0.0.1:9"


def control(method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(FAKE + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def new_token(**spec: Any) -> str:
    token = "tok-apt-" + uuid.uuid4().hex
    control("POST", "/_control/tokens", {token: spec})
    return token


def introspections() -> int:
    n: int = control("GET", "/_control/counters")["introspect"]
    return n


out: Dict[str, Any] = {"errors": []}


def record(name: str, fn: Callable[[], Any]) -> None:
    try:
        out[name] = fn()
    except Exception as err:  # noqa: BLE001 - reported to the test, which fails on it
        out[name] = {"exception": type(err).__name__, "mro": [k.__name__ for k in type(err).__mro__],
                     "message": str(err)}
        out["errors"].append(f"{name}: {traceback.format_exc()}")


import tokenchecker  # noqa: E402
import tokenchecker.apt  # noqa: E402

out["version"] = tokenchecker.apt.install(auth_url=FAKE, groups_url=FAKE)
out["generation"] = tokenchecker.apt.generation(out["version"])
out["options"] = tokenchecker.apt.options()
gen = out["generation"]

import flask  # noqa: E402
from globus_action_provider_tools import authentication as apt_auth  # noqa: E402
from globus_action_provider_tools import errors as apt_errors  # noqa: E402
from globus_action_provider_tools.data_types import (  # noqa: E402
    ActionProviderDescription,
    ActionStatus,
    ActionStatusValue,
)
from globus_action_provider_tools.flask import ActionProviderBlueprint  # noqa: E402
from globus_action_provider_tools.flask import helpers as apt_helpers  # noqa: E402

SESSION_INFO = {"session_id": "s-apt", "authentications": {ALICE_ID: {"acr": None, "auth_time": 1700000000}}}
alice = new_token(identity_set=[ALICE_ID], sub=ALICE_ID, username="alice@example.org",
                  dependent_tokens=[{"scope": TRANSFER_SCOPE, "resource_server": "transfer.api.globus.org"}],
                  extra={"session_info": SESSION_INFO})
carol = new_token(identity_set=[CAROL_ID], sub=CAROL_ID, groups=[RUN_GROUP])
bob = new_token(identity_set=[BOB_ID], sub=BOB_ID, groups=[])
inactive = new_token(active=False)
wrong_scope = new_token(identity_set=[ALICE_ID], sub=ALICE_ID, scope="urn:globus:auth:scope:other:all openid")
outage = new_token(identity_set=[ALICE_ID], sub=ALICE_ID)

description = ActionProviderDescription(
    globus_auth_scope=SCOPE,
    title="tokenchecker apt test",
    admin_contact="admin@example.org",
    synchronous=True,
    input_schema={"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]},
    api_version="1.0",
    visible_to=["all_authenticated_users"],
    runnable_by=[f"urn:globus:auth:identity:{ALICE_ID}", f"urn:globus:groups:id:{RUN_GROUP}"],
)
bp = ActionProviderBlueprint(name="apt", import_name=__name__, url_prefix="/ap", provider_description=description)


@bp.action_run  # type: ignore[untyped-decorator]
def run(action_request: Any, auth: Any) -> Any:
    return ActionStatus(
        status=ActionStatusValue.SUCCEEDED,
        creator_id=auth.effective_identity,
        details={"echo": action_request.body["echo"], "state_class": type(auth).__module__ + "." + type(auth).__name__},
    )


app = flask.Flask(__name__)
app.config["CLIENT_ID"] = CLIENT_ID
app.config["CLIENT_SECRET"] = CLIENT_SECRET
if hasattr(apt_helpers, "assign_json_provider"):
    apt_helpers.assign_json_provider(app)
app.register_blueprint(bp)
client = app.test_client()


def call(method: str, path: str, token: Optional[str], body: Any = None) -> Dict[str, Any]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    resp = client.open(path, method=method, headers=headers, json=body)
    try:
        data = resp.get_json(force=True, silent=True)
    except Exception:  # noqa: BLE001 - a non-JSON body is reported as None
        data = None
    return {"status": resp.status_code, "retry_after": resp.headers.get("Retry-After"), "json": data}


RUN_BODY = {"request_id": "r-1", "body": {"echo": "hello"}}

out["checker_kind"] = type(getattr(bp, "checker", None) or getattr(bp, "state_builder", None)).__name__
before = introspections()
record("introspect_alice", lambda: call("GET", "/ap/", alice))
record("run_alice", lambda: call("POST", "/ap/run", alice, RUN_BODY))
record("run_alice_again", lambda: call("POST", "/ap/actions", alice, RUN_BODY))
out["alice_introspections"] = introspections() - before
record("run_carol_by_group", lambda: call("POST", "/ap/run", carol, RUN_BODY))
record("run_bob_not_allowed", lambda: call("POST", "/ap/run", bob, RUN_BODY))
record("run_inactive", lambda: call("POST", "/ap/run", inactive, RUN_BODY))
record("introspect_inactive", lambda: call("GET", "/ap/", inactive))
record("run_no_header", lambda: call("POST", "/ap/run", None, RUN_BODY))
record("introspect_no_header", lambda: call("GET", "/ap/", None))
record("run_wrong_scope", lambda: call("POST", "/ap/run", wrong_scope, RUN_BODY))

control("POST", "/_control/faults", {"endpoint": "introspect", "status": 503})
try:
    record("run_outage", lambda: call("POST", "/ap/run", outage, RUN_BODY))
    record("introspect_outage", lambda: call("GET", "/ap/", outage))
finally:
    control("DELETE", "/_control/faults")
# the outage was not cached: the same token works once Globus is back
record("run_after_outage", lambda: call("POST", "/ap/run", outage, RUN_BODY))

# ---- errors ---------------------------------------------------------------------------------------
out["rejected_is_apt_authentication_error"] = issubclass(tokenchecker.TokenRejectedError,
                                                         apt_errors.AuthenticationError)
out["inactive_is_apt_authentication_error"] = issubclass(tokenchecker.InactiveTokenError,
                                                         apt_errors.AuthenticationError)
if hasattr(apt_errors, "ConfigurationError"):
    out["config_error_is_apt"] = issubclass(tokenchecker.InvalidConfigError, apt_errors.ConfigurationError)

# ---- the release's direct API ---------------------------------------------------------------------


def legacy_api() -> Dict[str, Any]:
    res: Dict[str, Any] = {}
    checker = apt_auth.TokenChecker(CLIENT_ID, CLIENT_SECRET, [SCOPE])
    res["checker_class"] = type(checker).__module__ + "." + type(checker).__name__
    state = checker.check_token(alice)
    resp = state.introspect_token()
    res["introspect_data_sub"] = resp.data["sub"]
    res["introspect_item_username"] = resp["username"]
    res["introspect_scope"] = resp.get("scope")
    res["introspect_identity_set"] = resp["identity_set"]
    res["introspect_fields"] = sorted(resp.data)
    res["introspect_session_info"] = resp.data.get("session_info") == SESSION_INFO
    res["identities"] = sorted(state.identities)
    res["authorizer_token_prefix"] = state.get_authorizer_for_scope(TRANSFER_SCOPE).access_token[:4]
    res["inactive_introspect"] = checker.check_token(inactive).introspect_token()
    res["inactive_identities"] = sorted(checker.check_token(inactive).identities)
    res["wrong_scope_identities"] = sorted(checker.check_token(wrong_scope).identities)
    try:
        apt_auth.TokenChecker("bogus", "bogus", [SCOPE])
        res["bad_credentials"] = "no error"
    except Exception as err:  # noqa: BLE001 - the class is what is checked
        res["bad_credentials"] = [k.__name__ for k in type(err).__mro__]
    if gen == 11:
        cfg = {"backend": "dogpile.cache.memory", "timeout": 20}
        apt_auth.TokenChecker(CLIENT_ID, CLIENT_SECRET, [SCOPE], cache_config=cfg)
        res["cache_config_untouched"] = cfg == {"backend": "dogpile.cache.memory", "timeout": 20}
        res["cache_timeout_s"] = tokenchecker.stats()["cache"]["timeout_s"]
    return res


def builder_api() -> Dict[str, Any]:
    import globus_sdk  # type: ignore[import-not-found]

    res: Dict[str, Any] = {}
    auth_client = globus_sdk.ConfidentialAppAuthClient(CLIENT_ID, CLIENT_SECRET)
    kwargs: Dict[str, Any] = {}
    if gen >= 21 or hasattr(apt_auth, "ClientFactory"):
        from globus_action_provider_tools.client_factory import ClientFactory

        kwargs["client_factory"] = ClientFactory()
    builder = apt_auth.AuthStateBuilder(auth_client, [SCOPE], **kwargs)
    state = builder.build(alice)
    res["state_class"] = type(state).__module__ + "." + type(state).__name__
    res["state_mro_modules"] = [k.__module__ for k in type(state).__mro__]
    res["effective_identity"] = state.effective_identity
    res["identities"] = sorted(state.identities)
    resp = state.introspect_token()
    res["introspect_data_sub"] = resp.data["sub"]
    res["introspect_item_username"] = resp["username"]
    res["introspect_fields"] = sorted(resp.data)
    res["introspect_session_info"] = resp.data.get("session_info") == SESSION_INFO
    res["group_in_principal_list"] = [
        apt_auth.AuthState.group_in_principal_list([f"urn:globus:groups:id:{RUN_GROUP}"]),
        state.group_in_principal_list([f"urn:globus:auth:identity:{ALICE_ID}"]),
    ]
    res["authorizer_class"] = type(state.get_authorizer_for_scope(TRANSFER_SCOPE)).__name__
    res["authorizer_token_prefix"] = state.get_authorizer_for_scope(TRANSFER_SCOPE).access_token[:4]
    try:
        res["authorizer_missing"] = repr(state.get_authorizer_for_scope("urn:nothing:here"))
    except ValueError as err:
        res["authorizer_missing"] = f"ValueError: {err}"
    res["groups_carol"] = sorted(builder.build(carol).groups)

    def outcome(token: str, read: Callable[[Any], Any]) -> Dict[str, Any]:
        where = "construction"
        try:
            st = builder.build(token)
            where = "read"
            value = read(st)
            return {"raised": None, "value": value}
        except Exception as err:  # noqa: BLE001 - the class is what is checked
            info: Dict[str, Any] = {"raised": type(err).__name__, "where": where,
                                    "mro": [k.__module__ + "." + k.__name__ for k in type(err).__mro__]}
            for name in ("InactiveTokenError", "InvalidTokenScopesError"):
                apt_cls = getattr(apt_auth, name, None)
                if isinstance(apt_cls, type):
                    info[f"is_apt_{name}"] = isinstance(err, apt_cls)
            if hasattr(err, "expected_scopes"):
                info["expected_scopes"] = sorted(err.expected_scopes)
                info["actual_scopes"] = sorted(getattr(err, "actual_scopes", ()))
            return info

    res["inactive_effective_identity"] = outcome(inactive, lambda s: s.effective_identity)
    res["inactive_introspect"] = outcome(inactive, lambda s: s.introspect_token())
    res["wrong_scope_identities"] = outcome(wrong_scope, lambda s: sorted(s.identities))
    return res


record("api", legacy_api if gen in (11, 12) else builder_api)

print("APT-RESULT " + json.dumps(out, default=list))
