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

Failures answer as bindings/contract/http.json says (RFC 6750 §3.1: 401 with a bare
challenge without bearer credentials, 400 ``invalid_request`` for a malformed ``Bearer``
header, 401 ``invalid_token``, 403 ``insufficient_scope`` or not allowed, 503 with
``Retry-After``, 500; a JSON body ``{"error": {"code", "message"}}``); the view is not called.
``on_error(request, status, err)`` sees each failure first, with the library's detail (to log
it; an exception from it is logged and the answer written anyway).
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Callable, Iterable, Optional, TypeVar, cast

import flask

from ._checker import AuthState, TokenChecker
from .errors import TokenCheckerError
from .http import DEFAULT_REALM, HTTPError, _call_on_error, _check_on_error, bearer_token, http_error

F = TypeVar("F", bound=Callable[..., Any])

#: ``on_error(request, status, err)``: the request, the answer's HTTP status, the error.
OnError = Callable[[flask.Request, int, BaseException], None]

log = logging.getLogger("tokenchecker")


def error_response(err: BaseException, realm: str = DEFAULT_REALM, scopes: Iterable[str] = ()) -> flask.Response:
    """The contract's answer for a failure, as a Flask response."""
    return _response(http_error(err, realm, scopes))


def _response(answer: HTTPError) -> flask.Response:
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
    realm: str = DEFAULT_REALM,
    attribute: str = "auth_state",
    on_error: Optional[OnError] = None,
) -> Callable[[F], F]:
    """Requires a valid bearer token (and, with ``allowed_principals``, one of them: the
    library's authorization, groups fetched only when needed). The checked
    :class:`~tokenchecker.AuthState` is ``flask.g.<attribute>`` (``flask.g.auth_state``).
    Works on sync and async views (async ones check without blocking their loop).

    ``on_error(request, status, err)``, like Go's ``OnError`` and Node's ``onError``, is called
    before each error answer is made, with the request (the object behind ``flask.request``),
    the answer's HTTP status and the error (with the library's detail, which the answer's body
    lacks; never the token): log at least the 5xx ones (503 with ``CredentialsRejectedError`` is
    this service's wrong client id or secret, 500 a bug). It must be a plain function; an
    exception from it is logged to the ``tokenchecker`` logger and the answer is written anyway."""
    _check_on_error(on_error)
    principals = None if allowed_principals is None else [str(p) for p in allowed_principals]
    scopes = checker.expected_scopes

    def fail(err: BaseException) -> flask.Response:
        if not isinstance(err, TokenCheckerError):
            log.exception("tokenchecker: unexpected error while checking a request", exc_info=err)
        answer = http_error(err, realm, scopes)
        if on_error is not None:  # the request itself, not the context-local proxy
            _call_on_error(on_error, cast(Any, flask.request)._get_current_object(), answer.status, err, log)
        return _response(answer)

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


__all__ = ["OnError", "authenticated", "error_response"]
