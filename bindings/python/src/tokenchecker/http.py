"""The HTTP contract of the web helpers (bindings/contract/http.json, shared with Go and Node).

Framework-free: :func:`bearer_token` reads a request's ``Authorization`` header values and
:func:`http_error` says what to answer for a failure. ``tokenchecker.flask`` and
``tokenchecker.fastapi`` use them.
"""

from __future__ import annotations

import json
import re
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from . import errors as e

#: code -> (HTTP status, fixed body message, RFC 6750 ``error`` of WWW-Authenticate or None).
HTTP_ERRORS: Dict[str, Tuple[int, str, Optional[str]]] = {
    "TC_INVALID_ARGUMENT": (401, "the request has no valid bearer token", "invalid_request"),
    "TC_INACTIVE_TOKEN": (401, "the token is not active", "invalid_token"),
    "TC_TOKEN_EXPIRED": (401, "the token has expired or is not yet valid", "invalid_token"),
    "TC_WRONG_AUDIENCE": (401, "the token is not meant for this service", "invalid_token"),
    "TC_INSUFFICIENT_SCOPE": (403, "the token lacks the scope this service requires", "insufficient_scope"),
    "TC_NOT_AUTHORIZED": (403, "the caller is not allowed to use this resource", None),
    "TC_AUTH_UNAVAILABLE": (503, "the authorization service is unavailable; try again later", None),
    "TC_CREDENTIALS_REJECTED": (503, "the authorization service is unavailable; try again later", None),
    "TC_PANIC": (500, "internal error", None),
}

#: Seconds in the Retry-After header of every 503 answer.
RETRY_AFTER_S = 5

_TOKEN = re.compile(r"[\x21-\x7e]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class HTTPError(NamedTuple):
    """What to answer for a failure: status, headers and the JSON body."""

    status: int
    code: str
    message: str
    www_authenticate: Optional[str]
    retry_after: Optional[str]

    def body(self) -> bytes:
        return json.dumps({"error": {"code": self.code, "message": self.message}}).encode()

    def headers(self) -> List[Tuple[str, str]]:
        out = [
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
        ]
        if self.www_authenticate is not None:
            out.append(("WWW-Authenticate", self.www_authenticate))
        if self.retry_after is not None:
            out.append(("Retry-After", self.retry_after))
        return out


def _quote(value: str) -> str:
    return '"' + _CONTROL.sub(" ", value.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def http_error(err: BaseException, realm: str = "api", scopes: Iterable[str] = ()) -> HTTPError:
    """The answer for ``err``: a :class:`~tokenchecker.errors.TokenCheckerError` maps through
    the contract (a code it does not name answers 500 with that code; ``TC_CLOSED`` answers as
    ``TC_AUTH_UNAVAILABLE``); anything else is 500 ``TC_PANIC``. ``scopes`` (the checker's
    expected scopes) are named in the ``insufficient_scope`` challenge."""
    code = err.code if isinstance(err, e.TokenCheckerError) else "TC_PANIC"
    if code == "TC_CLOSED":
        code = "TC_AUTH_UNAVAILABLE"
    status, message, bearer = HTTP_ERRORS.get(code, HTTP_ERRORS["TC_PANIC"])
    challenge = None
    if bearer is not None:
        challenge = f"Bearer realm={_quote(realm)}, error={_quote(bearer)}"
        scope_list = sorted(scopes) if not isinstance(scopes, (list, tuple)) else list(scopes)
        if bearer == "insufficient_scope" and scope_list:
            challenge += f", scope={_quote(' '.join(scope_list))}"
    retry_after = str(RETRY_AFTER_S) if status == 503 else None
    return HTTPError(status, code, message, challenge, retry_after)


def bearer_token(values: Sequence[str]) -> str:
    """The token of a request's ``Authorization`` header values (all of them: a repeated
    header is refused). RFC 6750: the scheme ``Bearer`` (any case) and one space, then one
    token of visible ASCII; spaces and tabs around it are ignored. Raises
    :class:`~tokenchecker.errors.InvalidArgumentError` otherwise, without any network call."""
    if not values:
        raise e.InvalidArgumentError(
            'the request has no Authorization header; send one: "Authorization: Bearer <access token>"'
        )
    if len(values) > 1:
        raise e.InvalidArgumentError(
            'the Authorization header is repeated; send exactly one: "Authorization: Bearer <access token>"'
        )
    header = values[0]
    if len(header) <= 7 or header[:7].lower() != "bearer ":
        raise e.InvalidArgumentError(
            'the Authorization header is malformed; send "Authorization: Bearer <access token>"'
        )
    token = header[7:].strip(" \t")
    if not token or _TOKEN.fullmatch(token) is None:
        raise e.InvalidArgumentError(
            'the Authorization header is malformed; send "Authorization: Bearer <access token>"'
        )
    return token


__all__ = ["HTTP_ERRORS", "RETRY_AFTER_S", "HTTPError", "bearer_token", "http_error"]
