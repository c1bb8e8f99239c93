"""Typed exceptions, one per ``TC_*`` status of the C library.

Every exception carries ``code`` (``"TC_INACTIVE_TOKEN"``, …), ``status`` (the C number) and
``message`` (the library's message, which never contains a token or a secret).
"""

from __future__ import annotations

import json
from typing import Dict, Optional, Type

from . import _native as n


class TokenCheckerError(Exception):
    """A failure reported by libtokenchecker (or found by this binding before calling it)."""

    code: str = "TC_UNKNOWN"
    status: int = -1

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
    code, status = "TC_INVALID_ARGUMENT", n.TC_INVALID_ARGUMENT


class InvalidConfigError(ConfigurationError, ValueError):
    code, status = "TC_INVALID_CONFIG", n.TC_INVALID_CONFIG


class TokenRejectedError(TokenCheckerError):
    """Base of the errors that say "this token may not be used here" (HTTP 401/403 material)."""


class InactiveTokenError(TokenRejectedError):
    code, status = "TC_INACTIVE_TOKEN", n.TC_INACTIVE_TOKEN


class InsufficientScopeError(TokenRejectedError):
    code, status = "TC_INSUFFICIENT_SCOPE", n.TC_INSUFFICIENT_SCOPE


class WrongAudienceError(TokenRejectedError):
    code, status = "TC_WRONG_AUDIENCE", n.TC_WRONG_AUDIENCE


class TokenExpiredError(TokenRejectedError):
    code, status = "TC_TOKEN_EXPIRED", n.TC_TOKEN_EXPIRED


class NotAuthorizedError(TokenRejectedError):
    code, status = "TC_NOT_AUTHORIZED", n.TC_NOT_AUTHORIZED


class CredentialsRejectedError(ConfigurationError):
    """Globus Auth refused this service's client_id/client_secret (HTTP 401)."""

    code, status = "TC_CREDENTIALS_REJECTED", n.TC_CREDENTIALS_REJECTED


class AuthUnavailableError(TokenCheckerError):
    """Globus Auth or Groups unreachable, timed out, erroring or malformed: retry later."""

    code, status = "TC_AUTH_UNAVAILABLE", n.TC_AUTH_UNAVAILABLE


class PanicError(TokenCheckerError):
    code, status = "TC_PANIC", n.TC_PANIC


class WouldBlockError(TokenCheckerError):
    code, status = "TC_WOULD_BLOCK", n.TC_WOULD_BLOCK


class CheckerClosedError(TokenCheckerError):
    """A method of a closed :class:`TokenChecker` was called."""

    code, status = "TC_CLOSED", -1


_BY_STATUS: Dict[int, Type[TokenCheckerError]] = {
    cls.status: cls
    for cls in (
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
}

_BY_CODE: Dict[str, Type[TokenCheckerError]] = {cls.code: cls for cls in _BY_STATUS.values()}


def error_class(status: int) -> Type[TokenCheckerError]:
    return _BY_STATUS.get(status, TokenCheckerError)


def from_status(status: int, document: str = "") -> TokenCheckerError:
    """The exception for a status and the library's error document ``{"error": {code, message}}``."""
    message = ""
    code = None
    if document:
        try:
            err = json.loads(document)["error"]
            message = str(err.get("message", ""))
            code = err.get("code")
        except (ValueError, KeyError, TypeError, AttributeError):
            message = document
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = _BY_CODE.get(code or "", TokenCheckerError)
        return cls(message, code=code or n.status_name(status), status=status)
    return cls(message)


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
