"""Typed exceptions, one per ``TC_*`` status of the C library.

Every exception carries ``code`` (``"TC_INACTIVE_TOKEN"``, …), ``status`` (the C number, as the
library states it in ``tc_library_info``: looked up on first use) and ``message`` (the library's
message, which never contains a token or a secret). :class:`InsufficientScopeError` carries the
token's scopes too (``token_scopes``).
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Tuple, Type

from . import _native as n


class _Status:
    """A class's ``status``: the number of its ``code`` in the library's own table (loading the
    library on first use); -1 for a code the library has not (``TC_CLOSED``, ``TC_UNKNOWN``).
    An instance's own ``status`` (given at creation) wins."""

    def __get__(self, obj: Any, cls: Any) -> int:
        return -1 if cls.code == "TC_CLOSED" else n.status(cls.code)


class TokenCheckerError(Exception):
    """A failure reported by libtokenchecker (or found by this binding before calling it)."""

    code: str = "TC_UNKNOWN"
    status: int = _Status()  # type: ignore[assignment]

    def __init__(self, message: str = "", *, code: Optional[str] = None, status: Optional[int] = None):
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.message = message or self.code
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.message} ({self.code})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


class ConfigurationError(TokenCheckerError):
    """The checker cannot be created: a bad configuration, or client credentials that Globus
    Auth refuses. Named after ``globus_action_provider_tools.errors.ConfigurationError``."""


class InvalidArgumentError(TokenCheckerError, ValueError):
    code = "TC_INVALID_ARGUMENT"


class InvalidConfigError(ConfigurationError, ValueError):
    code = "TC_INVALID_CONFIG"


class TokenRejectedError(TokenCheckerError):
    """Base of the errors that say "this token may not be used here" (HTTP 401/403 material)."""


class InactiveTokenError(TokenRejectedError):
    code = "TC_INACTIVE_TOKEN"


class InsufficientScopeError(TokenRejectedError):
    """The token lacks the expected scopes; ``token_scopes`` are the scopes it has (from the
    error document's ``token_scopes``; empty when the library did not say)."""

    code = "TC_INSUFFICIENT_SCOPE"
    token_scopes: Tuple[str, ...] = ()


class WrongAudienceError(TokenRejectedError):
    code = "TC_WRONG_AUDIENCE"


class TokenExpiredError(TokenRejectedError):
    code = "TC_TOKEN_EXPIRED"


class NotAuthorizedError(TokenRejectedError):
    code = "TC_NOT_AUTHORIZED"


class CredentialsRejectedError(ConfigurationError):
    """Globus Auth refused this service's client_id/client_secret (HTTP 401)."""

    code = "TC_CREDENTIALS_REJECTED"


class AuthUnavailableError(TokenCheckerError):
    """Globus Auth or Groups unreachable, timed out, erroring or malformed: retry later."""

    code = "TC_AUTH_UNAVAILABLE"


class PanicError(TokenCheckerError):
    code = "TC_PANIC"


class WouldBlockError(TokenCheckerError):
    code = "TC_WOULD_BLOCK"


class CheckerClosedError(TokenCheckerError):
    """A method of a closed :class:`TokenChecker` was called (``status`` -1: not a library
    status)."""

    code = "TC_CLOSED"


_CLASSES: Tuple[Type[TokenCheckerError], ...] = (
    InvalidArgumentError,
    InvalidConfigError,
    InactiveTokenError,
    InsufficientScopeError,
    WrongAudienceError,
    TokenExpiredError,
    NotAuthorizedError,
    CredentialsRejectedError,
    AuthUnavailableError,
    PanicError,
    WouldBlockError,
)

_BY_CODE: Dict[str, Type[TokenCheckerError]] = {cls.code: cls for cls in _CLASSES}


def error_class(status: int) -> Type[TokenCheckerError]:
    """The class of a status number (:class:`TokenCheckerError` for one without a class)."""
    return _BY_CODE.get(n.status_name(status), TokenCheckerError)


def from_status(status: int, document: str = "") -> TokenCheckerError:
    """The exception for a status and the library's error document ``{"error": {code, message}}``
    (with ``token_scopes`` for ``TC_INSUFFICIENT_SCOPE``)."""
    message = ""
    code = None
    token_scopes: Any = None
    if document:
        try:
            err = json.loads(document)["error"]
            message = str(err.get("message", ""))
            code = err.get("code")
            token_scopes = err.get("token_scopes")
        except (ValueError, KeyError, TypeError, AttributeError):
            message = document
    name = n.status_name(status)
    cls = _BY_CODE.get(name)
    if cls is None:
        cls = _BY_CODE.get(code or "", TokenCheckerError)
        return cls(message, code=code or name, status=status)
    exc = cls(message)
    if isinstance(exc, InsufficientScopeError) and isinstance(token_scopes, list):
        exc.token_scopes = tuple(str(s) for s in token_scopes)
    return exc


__all__ = [
    "TokenCheckerError",
    "ConfigurationError",
    "InvalidArgumentError",
    "InvalidConfigError",
    "TokenRejectedError",
    "InactiveTokenError",
    "InsufficientScopeError",
    "WrongAudienceError",
    "TokenExpiredError",
    "NotAuthorizedError",
    "CredentialsRejectedError",
    "AuthUnavailableError",
    "PanicError",
    "WouldBlockError",
    "CheckerClosedError",
    "error_class",
    "from_status",
]
