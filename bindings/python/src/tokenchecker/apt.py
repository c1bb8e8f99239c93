"""One line moves an existing Globus action provider onto tokenchecker::

    import tokenchecker.apt
    tokenchecker.apt.install()          # before the app (and its ActionProviderBlueprint) is built

After :func:`install`, the installed globus-action-provider-tools (APT) checks every token
through libtokenchecker: its ``ActionProviderBlueprint``, ``add_action_routes_to_blueprint``
(``api_helpers``), ``TokenChecker`` (up to 0.18) and ``AuthStateBuilder`` /
``FlaskAuthStateBuilder`` / ``AuthState`` (from 0.19). The answers stay those of the installed
release, except where that release crashed with a 500: a Globus outage answers 503 with
``Retry-After``, and a missing or unusable token 401.

Supported releases (see :data:`SUPPORTED`): 0.11.x, 0.12–0.18, 0.19, 0.20 and 0.21. Any other
raises :class:`UnsupportedReleaseError` naming them.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import threading
import warnings
from types import ModuleType
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Tuple, Type, Union

from . import _checker as c
from . import errors as e
from ._env import URL_ENV_KEYS, merged

#: The releases install() knows, by API generation.
SUPPORTED: Tuple[str, ...] = ("0.11.x", "0.12–0.18", "0.19", "0.20", "0.21")

DISTRIBUTION = "globus-action-provider-tools"
PACKAGE = "globus_action_provider_tools"

#: Seconds in the Retry-After header of a 503 answer (as tokenchecker.http).
RETRY_AFTER_S = 5


class UnsupportedReleaseError(e.ConfigurationError):
    """The installed globus-action-provider-tools is not one :func:`install` supports (or is
    missing)."""

    code = "TC_INVALID_CONFIG"


def generation(version: str) -> int:
    """The API generation of an APT release: 11 (0.11.x), 12 (0.12–0.18), 19, 20 or 21.
    Raises :class:`UnsupportedReleaseError` for any other."""
    m = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", version)
    if m is not None and m.group(1) == "0":
        minor = int(m.group(2))
        if minor == 11:
            return 11
        if 12 <= minor <= 18:
            return 12
        if minor in (19, 20, 21):
            return minor
    raise UnsupportedReleaseError(
        f"globus-action-provider-tools {version} is not supported by tokenchecker.apt; "
        f"supported releases: {', '.join(SUPPORTED)}"
    )


def installed_version() -> str:
    """The installed globus-action-provider-tools version (from its distribution metadata)."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise UnsupportedReleaseError(
            f"{DISTRIBUTION} is not installed; tokenchecker.apt supports: {', '.join(SUPPORTED)}"
        ) from None


# ---- installed state ----------------------------------------------------------------------------

_lock = threading.RLock()
_options: Dict[str, Any] = {}
_generation: int = 0
_version: str = ""
#: (module name, attribute) -> the original object, for uninstall() and to wrap only originals.
_originals: Dict[Tuple[str, str], Any] = {}
#: Original __bases__ of our exception classes, for uninstall().
_original_bases: Dict[type, Tuple[type, ...]] = {}
#: The APT exception classes our state classes raise (built at install()).
_apt_errors: Dict[str, Type[BaseException]] = {}
#: (client_id, client_secret) -> checker, for the 0.19+ states.
_checkers: Dict[Tuple[str, str], c.TokenChecker] = {}


def installed() -> Optional[str]:
    """The APT version install() patched, or ``None``."""
    return _version or None


def options() -> Dict[str, Any]:
    """A copy of the configuration install() was given (environment merged in)."""
    return dict(_options)


def _module(name: str) -> Optional[ModuleType]:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _patch(module: Optional[ModuleType], attr: str, value: Any) -> None:
    if module is None or not hasattr(module, attr):
        return
    key = (module.__name__, attr)
    if key not in _originals:
        _originals[key] = getattr(module, attr)
    setattr(module, attr, value)


def _original(module_name: str, attr: str) -> Any:
    key = (module_name, attr)
    if key in _originals:
        return _originals[key]
    return getattr(importlib.import_module(module_name), attr)


def _checker_options(extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    out = dict(extra or {})
    out.update(_options)
    return out


# ---- answers --------------------------------------------------------------------------------------

class IntrospectionResponse(Dict[str, Any]):
    """The introspection answer, shaped like globus-sdk's response: dict access (``resp["sub"]``,
    ``resp.get("scope")``) and ``.data`` (the dict itself). Holds every member the server sent
    (``active``, ``scope``, ``sub``, ``username``, ``name``, ``email``, ``client_id``, ``aud``,
    ``exp``, ``nbf``, ``iat``, ``identity_set``, and the others, such as ``iss``,
    ``token_type`` or ``session_info``), from ``tc_answer_introspection``."""

    http_status = 200

    @property
    def data(self) -> Dict[str, Any]:
        return self


def _introspection(info: c.Info) -> IntrospectionResponse:
    return IntrospectionResponse(json.loads(info.introspection()))


# ---- 0.11.x – 0.18: TokenChecker -----------------------------------------------------------------


class LegacyAuthState(c.AuthState):
    """The ``AuthState`` of APT 0.11–0.18 (lazy; empty sets for a token that fails a rule)."""

    def introspect_token(self) -> Optional[IntrospectionResponse]:
        info = self._info or self._resolve()
        if info is None:
            return None
        return _introspection(info)


class LegacyTokenChecker(c.TokenChecker):
    """APT 0.13–0.18's ``TokenChecker(client_id, client_secret, expected_scopes,
    expected_audience=None)`` over libtokenchecker, configured by :func:`install`. Keyword
    options (``auth_url=…``) are the library's, as for :class:`tokenchecker.TokenChecker`."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        expected_scopes: Iterable[str],
        expected_audience: Optional[str] = None,
        **kw: Any,
    ) -> None:
        super().__init__(client_id, client_secret, expected_scopes, expected_audience, **_checker_options(kw))

    def check_token(
        self, access_token: str, expected_scopes: Optional[Union[str, Iterable[str]]] = None
    ) -> LegacyAuthState:
        base = super().check_token(access_token, expected_scopes)
        return LegacyAuthState(self, base._handle, base.bearer_token, base.expected_scopes)


class CachingTokenChecker(LegacyTokenChecker):
    """APT 0.11–0.12's ``TokenChecker(…, cache_config=None)`` (``cache_config`` as the
    original's: the process-wide cache's backend)."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        expected_scopes: Iterable[str],
        expected_audience: Optional[str] = None,
        cache_config: Optional[Dict[str, Any]] = None,
        **kw: Any,
    ) -> None:
        if cache_config:
            kw["cache_config"] = cache_config
        super().__init__(client_id, client_secret, expected_scopes, expected_audience, **kw)


# ---- 0.19 – 0.21: AuthState built from a ConfidentialAppAuthClient -----------------------------


def _credentials(auth_client: Any) -> Tuple[str, str]:
    client_id = getattr(auth_client, "client_id", None)
    authorizer = getattr(auth_client, "authorizer", None)
    secret = getattr(authorizer, "password", None)
    if not client_id or not isinstance(secret, str) or not secret:
        raise e.InvalidConfigError(
            "tokenchecker.apt needs a globus_sdk.ConfidentialAppAuthClient (client id and secret) "
            "to build an AuthState"
        )
    return str(client_id), secret


def _factory_options(client_factory: Any) -> Dict[str, Any]:
    """What the release's ClientFactory says about retries (0.20.1+: one retry)."""
    params = getattr(client_factory, "DEFAULT_AUTH_TRANSPORT_PARAMS", None)
    out: Dict[str, Any] = {}
    try:
        retries = dict(params or ()).get("max_retries")
    except (TypeError, ValueError):
        retries = None
    if isinstance(retries, int) and not isinstance(retries, bool) and retries >= 0:
        out["max_retries"] = retries
    return out


def _checker_for(auth_client: Any, scopes: FrozenSet[str], client_factory: Any) -> c.TokenChecker:
    key = _credentials(auth_client)
    with _lock:
        checker = _checkers.get(key)
        if checker is None or checker.closed:
            # As the release: every expected scope is required ("all"), no network call
            # before the first token (the release made none).
            config: Dict[str, Any] = {"scope_match": "all", "verify_credentials": False}
            config.update(_factory_options(client_factory))
            checker = c.TokenChecker(key[0], key[1], sorted(scopes), **_checker_options(config))
            _checkers[key] = checker
        return checker


class BuilderAuthState(c.AuthState):
    """The ``AuthState`` of APT 0.19–0.21, over libtokenchecker: built from the release's
    ``ConfidentialAppAuthClient``. ``install()`` makes a subclass of it and of the release's own
    ``AuthState`` (so ``isinstance`` checks keep working) and puts it where the release builds
    its states."""

    _apt_generation = 21

    def __init__(
        self,
        auth_client: Any,
        bearer_token: str,
        expected_scopes: Iterable[str],
        client_factory: Any = None,
    ) -> None:
        scopes = frozenset(expected_scopes)
        checker = _checker_for(auth_client, scopes, client_factory)
        base = checker.check_token(bearer_token, scopes)
        c.AuthState.__init__(self, checker, base._handle, bearer_token, scopes)
        self.auth_client = auth_client
        self._client_factory = client_factory
        self.sanitized_token = bearer_token[-7:] if isinstance(bearer_token, str) else ""
        if self._apt_generation >= 21:  # 0.21 introspects at construction and raises there
            self._token_data = self.introspect_token()

    def _scopes_error(self) -> BaseException:
        cls = _apt_errors["InvalidTokenScopesError"]
        return cls(self.expected_scopes, frozenset(getattr(self._error, "token_scopes", ())))

    def _inactive_error(self, err: Optional[e.TokenCheckerError]) -> BaseException:
        cls = _apt_errors["InactiveTokenError"]
        exc = cls("The token is invalid.")
        if err is not None and isinstance(exc, e.TokenCheckerError):
            exc.code, exc.status = err.code, err.status
            exc.message = err.message
        return exc

    def _verified(self) -> Optional[c.Info]:
        """The check's answer; per the release, ``None`` (0.19) or an exception (0.20+) for an
        inactive token, an ``InvalidTokenScopesError`` for missing scopes."""
        info = self._info or self._resolve()
        if info is not None:
            return info
        if isinstance(self._error, e.InsufficientScopeError):
            raise self._scopes_error()
        if self._apt_generation <= 19:
            return None
        raise self._inactive_error(self._error)

    def introspect_token(self) -> Optional[IntrospectionResponse]:
        info = self._verified()
        return None if info is None else _introspection(info)

    @property
    def effective_identity(self) -> Optional[str]:
        info = self._verified()
        return None if info is None else info.effective_identity

    @property
    def identities(self) -> FrozenSet[str]:
        info = self._verified()
        return c._EMPTY if info is None else info.identities

    @staticmethod
    def group_in_principal_list(principal_list: Iterable[str]) -> bool:
        return any(p.startswith("urn:globus:groups:id") for p in principal_list)

    def get_authorizer_for_scope(self, scope: str, *args: Any, **kwargs: Any) -> Any:
        """0.19: ``None`` when there is no dependent token for ``scope``; 0.20+: ``ValueError``.
        Otherwise a globus-sdk ``AccessTokenAuthorizer``."""
        authorizer = super().get_authorizer_for_scope(scope)
        if authorizer is None and self._apt_generation >= 20:
            raise ValueError("Dependent tokens do not match request.")
        return authorizer

    def get_dependent_tokens(self, *args: Any, **kwargs: Any) -> c.DependentTokens:
        if self._apt_generation >= 20:
            warnings.warn(
                "`get_dependent_tokens` is deprecated and will be removed in a future version.",
                DeprecationWarning,
                stacklevel=2,
            )
        return super().get_dependent_tokens()


# ---- errors -----------------------------------------------------------------------------------------


def _adopt_bases(apt_errors: Optional[ModuleType]) -> None:
    """Our exceptions also become the release's: a rejected token is its AuthenticationError
    (the blueprint answers 401), a configuration error its ConfigurationError (0.11–0.12)."""
    if apt_errors is None:
        return
    pairs: List[Tuple[type, str]] = [
        (e.TokenRejectedError, "AuthenticationError"),
        (e.ConfigurationError, "ConfigurationError"),
    ]
    for cls, name in pairs:
        apt_cls = getattr(apt_errors, name, None)
        if not isinstance(apt_cls, type) or issubclass(cls, apt_cls):
            continue
        _original_bases.setdefault(cls, cls.__bases__)
        cls.__bases__ = (*cls.__bases__, apt_cls)


def _build_error_classes(apt_auth: ModuleType) -> None:
    inactive_base = getattr(apt_auth, "InactiveTokenError", None)
    bases: Tuple[type, ...] = (e.InactiveTokenError,)
    if isinstance(inactive_base, type):
        bases = (e.InactiveTokenError, inactive_base)

    class InactiveTokenError(*bases):  # type: ignore[misc]
        """The token is not active (APT's ``InactiveTokenError`` where the release has one,
        a tokenchecker ``InactiveTokenError`` and the release's ``AuthenticationError``)."""

    scopes_base = getattr(apt_auth, "InvalidTokenScopesError", None)
    sbases: Tuple[type, ...] = (e.InsufficientScopeError,)
    if isinstance(scopes_base, type):
        sbases = (e.InsufficientScopeError, scopes_base)

    class InvalidTokenScopesError(*sbases):  # type: ignore[misc]
        """The token lacks an expected scope (the release's ``InvalidTokenScopesError``, with
        ``expected_scopes`` and ``actual_scopes``: the token's scopes, from the library's error
        document's ``token_scopes``)."""

        def __init__(self, expected_scopes: FrozenSet[str], actual_scopes: FrozenSet[str]) -> None:
            self.expected_scopes = expected_scopes
            self.actual_scopes = actual_scopes
            self.token_scopes = tuple(sorted(actual_scopes))
            # not TokenCheckerError.__init__: its super() call would reach the release's
            # __init__ (which wants the scopes again)
            self.message = (
                f"Token scopes were not valid. The valid scopes for this service are {sorted(expected_scopes)} "
                f"but the token contained {sorted(actual_scopes)} upon inspection."
            )
            Exception.__init__(self, self.message)

    for cls in (InactiveTokenError, InvalidTokenScopesError):
        cls.__module__ = __name__
    _apt_errors["InactiveTokenError"] = InactiveTokenError
    _apt_errors["InvalidTokenScopesError"] = InvalidTokenScopesError


# ---- the blueprint's error handler ----------------------------------------------------------------

_UNAVAILABLE = (e.AuthUnavailableError, e.CredentialsRejectedError, e.CheckerClosedError)


def _wrap_error_handler(original: Any) -> Any:
    if getattr(original, "__tokenchecker_wrapped__", False):
        return original

    def blueprint_error_handler(exc: Exception) -> Any:
        if isinstance(exc, _UNAVAILABLE):
            import flask

            resp = flask.jsonify(
                {
                    "code": "ServiceUnavailable",
                    "description": "the authorization service is unavailable; try again later",
                }
            )
            resp.status_code = 503
            resp.headers["Retry-After"] = str(RETRY_AFTER_S)
            resp.headers["Cache-Control"] = "no-store"
            return resp
        return original(exc)

    blueprint_error_handler.__tokenchecker_wrapped__ = True  # type: ignore[attr-defined]
    blueprint_error_handler.__wrapped__ = original  # type: ignore[attr-defined]
    return blueprint_error_handler


# ---- install ------------------------------------------------------------------------------------------


def install(**options: Any) -> str:
    """Makes the installed globus-action-provider-tools check tokens with tokenchecker. Call it
    once, before the app and its ``ActionProviderBlueprint`` are built (calling it again
    replaces the options for checkers created afterwards).

    ``options`` are library configuration keys (``auth_url``, ``groups_url``, ``cache_config``,
    ``fetch_groups``, ``ca_certs``, ``max_retries``, …); ``TC_AUTH_URL`` and ``TC_GROUPS_URL``
    fill ``auth_url`` / ``groups_url`` when not given (explicit options win). The client id,
    secret and scopes are the blueprint's own (its app config, its provider description).

    Returns the patched release's version. Raises :class:`UnsupportedReleaseError` (a
    :class:`~tokenchecker.ConfigurationError`) when APT is missing or not a supported release.
    """
    global _generation, _version
    version = installed_version()
    gen = generation(version)
    with _lock:
        _options.clear()
        _options.update(merged(options, URL_ENV_KEYS))
        # checkers made under the previous options are not reused
        _checkers.clear()
        apt_errors = _module(f"{PACKAGE}.errors")
        _adopt_bases(apt_errors)
        auth = importlib.import_module(f"{PACKAGE}.authentication")
        _build_error_classes(auth)
        package = _module(PACKAGE)
        flask_modules = [
            _module(f"{PACKAGE}.flask.{name}") for name in ("helpers", "api_helpers", "apt_blueprint")
        ]
        if gen in (11, 12):
            checker_cls: type = CachingTokenChecker if _version_tuple(version) <= (0, 12) else LegacyTokenChecker
            for mod in (auth, package, *flask_modules):
                _patch(mod, "TokenChecker", checker_cls)
        else:
            original_state = _original(f"{PACKAGE}.authentication", "AuthState")
            state_cls = type(
                "AuthState",
                (BuilderAuthState, original_state),
                {"_apt_generation": gen, "__module__": __name__, "__doc__": BuilderAuthState.__doc__},
            )
            for mod in (auth, package, *flask_modules):
                _patch(mod, "AuthState", state_cls)
        for mod in flask_modules:
            if mod is not None and hasattr(mod, "blueprint_error_handler"):
                original = _original(mod.__name__, "blueprint_error_handler")
                _patch(mod, "blueprint_error_handler", _wrap_error_handler(original))
        _generation = gen
        _version = version
    return version


def _version_tuple(version: str) -> Tuple[int, int]:
    m = re.match(r"^(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def uninstall() -> None:
    """Puts back what :func:`install` replaced (for tests; apps built meanwhile keep theirs)."""
    global _generation, _version
    with _lock:
        for (module_name, attr), value in _originals.items():
            mod = sys.modules.get(module_name)
            if mod is not None:
                setattr(mod, attr, value)
        _originals.clear()
        for cls, bases in _original_bases.items():
            cls.__bases__ = bases
        _original_bases.clear()
        for checker in _checkers.values():
            checker.close()
        _checkers.clear()
        _options.clear()
        _apt_errors.clear()
        _generation = 0
        _version = ""


def error_class(name: str) -> Type[BaseException]:
    """After :func:`install`: the exception class raised for ``"InactiveTokenError"`` or
    ``"InvalidTokenScopesError"`` (a tokenchecker error and, where the release has them, the
    release's classes)."""
    try:
        return _apt_errors[name]
    except KeyError:
        raise LookupError(f"{name}: call tokenchecker.apt.install() first") from None


__all__ = [
    "SUPPORTED",
    "BuilderAuthState",
    "CachingTokenChecker",
    "IntrospectionResponse",
    "LegacyAuthState",
    "LegacyTokenChecker",
    "UnsupportedReleaseError",
    "error_class",
    "generation",
    "install",
    "installed",
    "installed_version",
    "options",
    "uninstall",
]
