"""The HTTP contract of the web helpers (bindings/contract/http.json, shared with Go and Node),
after RFC 6750 §3.1.

Framework-free: :func:`bearer_token` reads a request's ``Authorization`` header values and
:func:`http_error` says what to answer for a failure. ``tokenchecker.flask`` and
``tokenchecker.fastapi`` use them.

The contract's facts (each code's status, message and challenge, the answer to a request
without bearer credentials, the Retry-After seconds) are read at import time from
``http_contract.json``, the package's byte-identical copy of bindings/contract/http.json (the
package is installed without the repository; tests/test_web.py fails when the copy is stale).
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from importlib import resources
from typing import Any, Callable, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from . import errors as e


class Answer(NamedTuple):
    """One answer of the contract (its ``about`` says what each field means)."""

    status: int
    message: str
    challenge: bool  #: a ``WWW-Authenticate: Bearer realm="…"`` header
    error: Optional[str]  #: its RFC 6750 ``error`` attribute
    scope: bool  #: its ``scope`` attribute: the expected scopes
    retry_after: bool  #: a ``Retry-After: RETRY_AFTER_S`` header


def _answer(doc: Mapping[str, Any]) -> Answer:
    return Answer(
        int(doc["status"]),
        str(doc["message"]),
        bool(doc["challenge"]),
        None if doc["error"] is None else str(doc["error"]),
        bool(doc["scope"]),
        bool(doc["retry_after"]),
    )


#: The contract document (http_contract.json).
CONTRACT: Mapping[str, Any] = json.loads(
    resources.files(__name__.rpartition(".")[0]).joinpath("http_contract.json").read_text(encoding="utf-8")
)
#: The default realm of the challenges ("api").
DEFAULT_REALM: str = CONTRACT["realm"]
#: Seconds in the Retry-After header of the answers that have one (503).
RETRY_AFTER_S: int = CONTRACT["retry_after_s"]
#: code -> the answer for a failure of that code.
ANSWERS: Mapping[str, Answer] = {code: _answer(doc) for code, doc in CONTRACT["answers"].items()}
#: The answer to a request without bearer credentials (:class:`NoBearerTokenError`): 401, a bare
#: challenge, code :data:`NO_BEARER_TOKEN_CODE`.
NO_BEARER_TOKEN: Answer = _answer(CONTRACT["no_bearer_token"])
NO_BEARER_TOKEN_CODE: str = CONTRACT["no_bearer_token"]["code"]
_CLOSED: str = CONTRACT["closed"]
_OTHERWISE: str = CONTRACT["otherwise"]

_TOKEN = re.compile(r"[\x21-\x7e]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HINT = 'send "Authorization: Bearer <access token>"'


class NoBearerTokenError(e.InvalidArgumentError):
    """:func:`bearer_token`'s error for a request without bearer credentials: no
    ``Authorization`` header, or one of another scheme (``Basic``, say). Answered 401 with a
    challenge without an ``error`` attribute (RFC 6750 §3.1), where a malformed ``Bearer``
    header (a plain :class:`~tokenchecker.errors.InvalidArgumentError`) is 400
    ``invalid_request``. Code ``TC_INVALID_ARGUMENT``, as its base class."""


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


def http_error(err: BaseException, realm: str = DEFAULT_REALM, scopes: Iterable[str] = ()) -> HTTPError:
    """The answer for ``err``, as the contract says: :data:`NO_BEARER_TOKEN` for a
    :class:`NoBearerTokenError`; for another
    :class:`~tokenchecker.errors.TokenCheckerError`, its code's (``TC_CLOSED`` answers as
    ``TC_AUTH_UNAVAILABLE``; a code the contract does not name answers 500 ``internal error``
    with that code); anything else is 500 ``TC_PANIC``. ``scopes`` (the checker's expected
    scopes) are named in the ``insufficient_scope`` challenge."""
    if isinstance(err, NoBearerTokenError):
        code, answer = NO_BEARER_TOKEN_CODE, NO_BEARER_TOKEN
    else:
        code = err.code if isinstance(err, e.TokenCheckerError) else _OTHERWISE
        if code == "TC_CLOSED":
            code = _CLOSED
        answer = ANSWERS.get(code, ANSWERS[_OTHERWISE])
    challenge = None
    if answer.challenge:
        challenge = f"Bearer realm={_quote(realm)}"
        if answer.error is not None:
            challenge += f", error={_quote(answer.error)}"
        scope_list = sorted(scopes) if not isinstance(scopes, (list, tuple)) else list(scopes)
        if answer.scope and scope_list:
            challenge += f", scope={_quote(' '.join(scope_list))}"
    retry_after = str(RETRY_AFTER_S) if answer.retry_after else None
    return HTTPError(answer.status, code, answer.message, challenge, retry_after)


def bearer_token(values: Sequence[str]) -> str:
    """The token of a request's ``Authorization`` header values (all of them: a repeated
    header is refused). RFC 6750: the scheme ``Bearer`` (any case) and one space, then one
    token of visible ASCII; spaces and tabs around it are ignored. Raises, without any network
    call, :class:`NoBearerTokenError` when there is no header or its scheme (the text before
    its first space or tab) is not ``Bearer``, and
    :class:`~tokenchecker.errors.InvalidArgumentError` when the header is repeated or its
    ``Bearer`` credentials are malformed (no token, a tab after the scheme, two words, a
    character other than visible ASCII)."""
    if not values:
        raise NoBearerTokenError(f"the request has no Authorization header; {_HINT}")
    if len(values) > 1:
        raise e.InvalidArgumentError(
            'the Authorization header is repeated; send exactly one: "Authorization: Bearer <access token>"'
        )
    header = values[0]
    end = next((i for i, ch in enumerate(header) if ch in " \t"), len(header))
    if header[:end].lower() != "bearer":
        raise NoBearerTokenError(f"the Authorization header's scheme is not Bearer; {_HINT}")
    token = header[end + 1 :].strip(" \t") if header[end : end + 1] == " " else ""
    if not token or _TOKEN.fullmatch(token) is None:
        raise e.InvalidArgumentError(
            f"the Authorization header is malformed; {_HINT}: one space after Bearer, "
            "then one token of visible ASCII characters"
        )
    return token


def _call_on_error(
    on_error: Optional[Callable[[Any, int, BaseException], None]],
    request: Any,
    status: int,
    err: BaseException,
    log: logging.Logger,
) -> None:
    """Calls the Flask or FastAPI helper's ``on_error(request, status, err)``: an exception
    from it is logged (``log.exception``), never raised, so the error answer is written anyway."""
    if on_error is None:
        return
    try:
        on_error(request, status, err)
    except Exception:  # noqa: BLE001 - the hook must not break the answer
        log.exception("tokenchecker: on_error raised; the error answer is written anyway")


def _check_on_error(on_error: Optional[Callable[..., Any]]) -> None:
    """Refuses an ``on_error`` that is not a plain function (a coroutine function would never run)."""
    if on_error is None:
        return
    if not callable(on_error):
        raise TypeError("on_error must be a function (request, status, err), or None")
    call = type(on_error).__call__ if not inspect.isroutine(on_error) else None  # a callable object's method
    if inspect.iscoroutinefunction(on_error) or (call is not None and inspect.iscoroutinefunction(call)):
        raise TypeError("on_error must be a plain function, not a coroutine function: it is called synchronously")


__all__ = [
    "ANSWERS",
    "CONTRACT",
    "DEFAULT_REALM",
    "NO_BEARER_TOKEN",
    "NO_BEARER_TOKEN_CODE",
    "RETRY_AFTER_S",
    "Answer",
    "HTTPError",
    "NoBearerTokenError",
    "bearer_token",
    "http_error",
]
