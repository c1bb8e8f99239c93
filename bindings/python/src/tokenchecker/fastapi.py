"""A FastAPI dependency (``pip install tokenchecker[fastapi]``).

::

    from fastapi import Depends, FastAPI
    from tokenchecker.fastapi import TokenAuth, install

    app = FastAPI()
    install(app)                        # contract-exact error bodies
    auth = TokenAuth(checker)
    admins = TokenAuth(checker, allowed_principals=["urn:globus:groups:id:…"])

    @app.get("/api/thing")
    async def thing(state: AuthState = Depends(auth)):
        return {"user": state.effective_identity}

The dependency checks without blocking the event loop (a cached token at once, otherwise on the
library's runtime). Failures raise :class:`TokenAuthError`, an ``HTTPException`` carrying the
contract's status and headers (bindings/contract/http.json); :func:`install` registers the
handler that answers with the contract's body ``{"error": {"code", "message"}}`` (without it,
FastAPI's default handler answers ``{"detail": {"error": …}}``, same status and headers). The
contract follows RFC 6750 §3.1: 401 with a bare challenge without bearer credentials, 400
``invalid_request`` for a malformed ``Bearer`` header, 401 ``invalid_token``, 403
``insufficient_scope`` or not allowed, 503 with ``Retry-After``, 500. ``on_error(request,
status, err)`` sees each failure first, with the library's detail (to log it; an exception from
it is logged and the answer made anyway).
"""

# No `from __future__ import annotations` here: FastAPI reads the dependency's annotations at
# run time, and older versions cannot resolve string annotations of a callable instance.
import logging
from typing import Callable, Iterable, Optional

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from ._checker import AuthState, TokenChecker
from .errors import TokenCheckerError
from .http import DEFAULT_REALM, HTTPError, _call_on_error, _check_on_error, bearer_token, http_error

log = logging.getLogger("tokenchecker")

#: ``on_error(request, status, err)``: the request, the answer's HTTP status, the error.
OnError = Callable[[Request, int, BaseException], None]


class TokenAuthError(HTTPException):
    """A failed check, as an HTTP answer (``answer``) plus the original error (``error``)."""

    def __init__(self, answer: HTTPError, error: BaseException) -> None:
        headers = {k: v for k, v in answer.headers() if k != "Content-Type"}
        super().__init__(
            status_code=answer.status,
            detail={"error": {"code": answer.code, "message": answer.message}},
            headers=headers,
        )
        self.answer = answer
        self.error = error


async def token_auth_error_handler(request: Request, exc: Exception) -> Response:
    """Answers a :class:`TokenAuthError` with the contract's body and headers."""
    if not isinstance(exc, TokenAuthError):  # pragma: no cover - registered for TokenAuthError only
        raise exc
    answer = exc.answer
    return JSONResponse(
        {"error": {"code": answer.code, "message": answer.message}},
        status_code=answer.status,
        headers={k: v for k, v in answer.headers() if k != "Content-Type"},
    )


def install(app: FastAPI) -> None:
    """Registers :func:`token_auth_error_handler` for :class:`TokenAuthError` on ``app``."""
    app.add_exception_handler(TokenAuthError, token_auth_error_handler)


class TokenAuth:
    """A dependency giving the request's checked :class:`~tokenchecker.AuthState`; with
    ``allowed_principals``, the caller must also be one of them (the library's authorization:
    groups fetched only when needed; ``NotAuthorized`` → 403, groups unavailable → 503).

    ``on_error(request, status, err)``, like Go's ``OnError`` and Node's ``onError``, is called
    before the :class:`TokenAuthError` of each failure is raised, with the request, the answer's
    HTTP status and the error (with the library's detail, which the answer's body lacks; never
    the token): log at least the 5xx ones (503 with ``CredentialsRejectedError`` is this
    service's wrong client id or secret, 500 a bug). It must be a plain function (it runs on the
    event loop: keep it short); an exception from it is logged to the ``tokenchecker`` logger
    and the answer is made anyway."""

    def __init__(
        self,
        checker: TokenChecker,
        *,
        allowed_principals: Optional[Iterable[str]] = None,
        allow_public: bool = False,
        allow_all_authenticated_users: bool = False,
        realm: str = DEFAULT_REALM,
        on_error: Optional[OnError] = None,
    ) -> None:
        _check_on_error(on_error)
        self.checker = checker
        self.allowed_principals = None if allowed_principals is None else [str(p) for p in allowed_principals]
        self.allow_public = allow_public
        self.allow_all_authenticated_users = allow_all_authenticated_users
        self.realm = realm
        self.on_error = on_error

    async def __call__(self, request: Request) -> AuthState:
        try:
            token = bearer_token(request.headers.getlist("authorization"))
            if self.allowed_principals is None:
                state = await self.checker.check_token_async(token)
                return state.raise_for_error()
            return await self.checker.authorize_async(
                token, self.allowed_principals, self.allow_public, self.allow_all_authenticated_users
            )
        except Exception as err:  # noqa: BLE001 - every failure answers per the contract
            if not isinstance(err, TokenCheckerError):
                log.exception("tokenchecker: unexpected error while checking a request", exc_info=err)
            answer = http_error(err, self.realm, self.checker.expected_scopes)
            _call_on_error(self.on_error, request, answer.status, err, log)
            raise TokenAuthError(answer, err) from err

    def __repr__(self) -> str:
        return f"<TokenAuth {self.checker!r}>"


__all__ = ["OnError", "TokenAuth", "TokenAuthError", "install", "token_auth_error_handler"]
