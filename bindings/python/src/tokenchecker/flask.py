"""A Flask decorator (``pip install tokenchecker[flask]``).

::

    from tokenchecker.flask import authenticated

    @app.get("/api/thing")
    @authenticated(checker)                       # any valid token
    def thing():
        return {"user": flask.g.auth_state.effective_identity}

    @app.post("/api/admin")
    @authenticated(checker, allowed_principals=["urn:globus:groups:id:…"])
    def admin(): ...

Failures answer as bindings/contract/http.json says (401/403/503 with a JSON body,
``WWW-Authenticate``, ``Retry-After``); the view is not called.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Callable, Iterable, Optional, TypeVar, cast

import flask

from ._checker import AuthState, TokenChecker
from .errors import TokenCheckerError
from .http import bearer_token, http_error

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("tokenchecker")


def error_response(err: BaseException, realm: str = "api", scopes: Iterable[str] = ()) -> flask.Response:
    """The contract's answer for a failure, as a Flask response."""
    answer = http_error(err, realm, scopes)
    resp = flask.Response(answer.body(), status=answer.status)
    for name, value in answer.headers():
        resp.headers[name] = value
    return resp


def authenticated(
    checker: TokenChecker,
    *,
    allowed_principals: Optional[Iterable[str]] = None,
    allow_public: bool = False,
    allow_all_authenticated_users: bool = False,
    realm: str = "api",
    attribute: str = "auth_state",
) -> Callable[[F], F]:
    """Requires a valid bearer token (and, with ``allowed_principals``, one of them: the
    library's authorization, groups fetched only when needed). The checked
    :class:`~tokenchecker.AuthState` is ``flask.g.<attribute>`` (``flask.g.auth_state``).
    Works on sync and async views (async ones check without blocking their loop)."""
    principals = None if allowed_principals is None else [str(p) for p in allowed_principals]
    scopes = checker.expected_scopes

    def fail(err: BaseException) -> flask.Response:
        if not isinstance(err, TokenCheckerError):
            log.exception("tokenchecker: unexpected error while checking a request", exc_info=err)
        return error_response(err, realm, scopes)

    def token_of_request() -> str:
        return bearer_token(flask.request.headers.getlist("Authorization"))

    def decorate(view: F) -> F:
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    token = token_of_request()
                    state: AuthState
                    if principals is None:
                        state = await checker.check_token_async(token)
                        state.raise_for_error()
                    else:
                        state = await checker.authorize_async(
                            token, principals, allow_public, allow_all_authenticated_users
                        )
                except Exception as err:  # noqa: BLE001 - every failure answers per the contract
                    return fail(err)
                setattr(flask.g, attribute, state)
                return await view(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                token = token_of_request()
                if principals is None:
                    state = checker.check(token)
                else:
                    state = checker.authorize(token, principals, allow_public, allow_all_authenticated_users)
            except Exception as err:  # noqa: BLE001 - every failure answers per the contract
                return fail(err)
            setattr(flask.g, attribute, state)
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


__all__ = ["authenticated", "error_response"]
