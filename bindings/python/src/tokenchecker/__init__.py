"""tokenchecker: Globus OAuth2 bearer-token checking in native code.

A drop-in replacement for ``globus_action_provider_tools.authentication.TokenChecker``::

    from tokenchecker import TokenChecker

    checker = TokenChecker(client_id, client_secret, [scope])
    state = checker.check_token(token)
    state.identities            # frozenset of urn:globus:auth:identity:<id>
    await checker.check_token_async(token)   # without blocking an asyncio loop

The cached paths run in the compiled extension ``tokenchecker._speedups`` when it is installed,
over ctypes otherwise (or with ``TOKENCHECKER_PY_PURE=1``): :func:`implementation` says which.
"""

from __future__ import annotations

from typing import Any, Dict

from . import errors
from ._checker import (
    GROUPS_SCOPE,
    AuthState,
    DependentTokens,
    TokenChecker,
    group_principal,
    identity_principal,
    implementation,
    metrics,
    stats,
)
from ._logging import set_log_level
from ._native import ABI_VERSION, LIB_DIR_ENV, LibraryNotFoundError
from .errors import (
    AuthUnavailableError,
    CheckerClosedError,
    ConfigurationError,
    CredentialsRejectedError,
    InactiveTokenError,
    InsufficientScopeError,
    InvalidArgumentError,
    InvalidConfigError,
    NotAuthorizedError,
    PanicError,
    TokenCheckerError,
    TokenExpiredError,
    TokenRejectedError,
    WouldBlockError,
    WrongAudienceError,
)

__version__ = "0.1.0"


def library_version() -> str:
    """The native library's version ("MAJOR.MINOR.PATCH")."""
    from . import _native

    raw = _native.load().tc_version()
    return raw.decode("ascii") if raw else ""


def library_path() -> str:
    """Where the native library was loaded from."""
    from . import _native

    return _native.library_path()


def library_info() -> Dict[str, Any]:
    """What the native library states about itself (``tc_library_info``): ``version``,
    ``abi_version``, ``statuses`` (``{"TC_OK": 0, …}``), ``sources`` (the cache sources
    ``AuthState.cache_source`` names), ``config_keys`` (what ``TokenChecker`` accepts) and
    ``rule_keys`` (what may change per call)."""
    from . import _native

    return _native.library_info()


__all__ = [
    "ABI_VERSION",
    "GROUPS_SCOPE",
    "LIB_DIR_ENV",
    "AuthState",
    "AuthUnavailableError",
    "CheckerClosedError",
    "ConfigurationError",
    "CredentialsRejectedError",
    "DependentTokens",
    "InactiveTokenError",
    "InsufficientScopeError",
    "InvalidArgumentError",
    "InvalidConfigError",
    "LibraryNotFoundError",
    "NotAuthorizedError",
    "PanicError",
    "TokenChecker",
    "TokenCheckerError",
    "TokenExpiredError",
    "TokenRejectedError",
    "WouldBlockError",
    "WrongAudienceError",
    "errors",
    "group_principal",
    "identity_principal",
    "implementation",
    "library_info",
    "library_path",
    "library_version",
    "metrics",
    "set_log_level",
    "stats",
]
