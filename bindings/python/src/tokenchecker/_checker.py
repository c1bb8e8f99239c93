"""TokenChecker and AuthState: the original Globus Action Provider Tools API over libtokenchecker.

The hot paths (a cached check, a cached authorization) run in the core chosen by ``_core``: the
compiled extension ``tokenchecker._speedups`` or, without it, ``_pycore`` over ctypes. Both build
what a check found from the answer's fields (``tc_answer_fields``), memoised by answer id and
bounded by bytes; this module holds everything else (misses, errors, async and cooperative
waiting, fork).
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import json
import os
import select
import sys
import threading
from ctypes import byref, c_void_p
from importlib import import_module
from typing import (
    Any,
    Callable,
    Dict,
    FrozenSet,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    Union,
)

from . import _native as n
from . import errors as e
from ._core import IMPLEMENTATION, core

IDENTITY_PREFIX = "urn:globus:auth:identity:"
GROUP_PREFIX = "urn:globus:groups:id:"
GROUPS_SCOPE = "urn:globus:auth:scope:groups.api.globus.org:view_my_groups_and_memberships"

_EMPTY: FrozenSet[str] = frozenset()

#: What a check or authorization found: (status, info, cache source, age in ms, the error
#: document on a failure or the matched principal on a success).
Result = Tuple[int, Optional[core.Info], Optional[str], int, Optional[str]]
Info = core.Info
Handle = core.Handle
Policy = core.Policy

# Errors that the original raised too (its SDK raised on a failed introspection): even in the
# default (non-strict) mode they propagate instead of becoming an empty identity set.
_ALWAYS_RAISE = (
    e.AuthUnavailableError,
    e.CredentialsRejectedError,
    e.PanicError,
    e.WouldBlockError,
    e.CheckerClosedError,
    e.InvalidConfigError,
)


def identity_principal(id_: str) -> str:
    """``urn:globus:auth:identity:<id>`` (as the original module's function)."""
    return IDENTITY_PREFIX + id_


def group_principal(id_: str) -> str:
    """``urn:globus:groups:id:<id>`` (as the original module's function)."""
    return GROUP_PREFIX + id_


def implementation() -> str:
    """Which implementation runs the hot paths: ``"extension"`` (the compiled
    ``tokenchecker._speedups``) or ``"ctypes"`` (without it, or with ``TOKENCHECKER_PY_PURE=1``)."""
    return IMPLEMENTATION


def _st(name: str) -> int:
    return n.STATUS[name]


# ---- arguments -----------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"configuration value of type {type(value).__name__} is not JSON-serialisable")


def _scope_list(scopes: Union[str, Iterable[str]]) -> List[str]:
    if isinstance(scopes, str):
        return scopes.split()
    return [str(s) for s in scopes]


def _encode_token(token: Union[str, bytes]) -> bytes:
    if isinstance(token, str):
        return token.encode("utf-8", "surrogatepass")
    if isinstance(token, (bytes, bytearray)):
        return bytes(token)
    raise e.InvalidArgumentError(f"the token must be a str, not {type(token).__name__}")


def _nul_error(what: str) -> e.InvalidArgumentError:
    # C strings end at the first NUL: "good\x00junk" would be checked as "good".
    return e.InvalidArgumentError(f"{what} contains a NUL byte; pass the value without it")


def _token_bytes(token: Union[str, bytes]) -> bytes:
    """The token as the C string the library gets; refuses one the C string would cut short."""
    tb = _encode_token(token)
    if 0 in tb:  # the NUL byte (an int: ~20 ns where a bytes needle costs ~170)
        raise _nul_error("the token")
    return tb


def _arg_bytes(value: str, what: str) -> bytes:
    """A scope or identity id for the library (a C string: no NUL inside)."""
    vb = value.encode()
    if 0 in vb:  # the NUL byte
        raise _nul_error(what)
    return vb


def _call_json(lib: ctypes.CDLL, fn: str, *args: Any) -> Dict[str, Any]:
    """A library call whose out-parameter is a JSON document (the last argument)."""
    out = c_void_p()
    st = getattr(lib, fn)(*args, byref(out))
    text = n.take_string(lib, out.value)
    if st != _st("TC_OK"):
        raise e.from_status(st, text)
    doc: Dict[str, Any] = json.loads(text)
    return doc


def _new_checker(lib: ctypes.CDLL, config: Dict[str, Any]) -> core.Handle:
    doc = json.dumps(config, default=_jsonable).encode("utf-8")
    ptr = c_void_p()
    err = c_void_p()
    st = lib.tc_new(doc, byref(ptr), byref(err))
    text = n.take_string(lib, err.value)
    if st != _st("TC_OK"):
        raise e.from_status(st, text)
    return core.Handle(ptr.value or 0)


def _derive(lib: ctypes.CDLL, parent: core.Handle, rules: Dict[str, Any]) -> core.Handle:
    """A checker with other rules sharing ``parent``'s HTTP client and request slots (tc_derive)."""
    ptr = c_void_p()
    err = c_void_p()
    st = lib.tc_derive(parent.ptr, json.dumps(rules).encode(), byref(ptr), byref(err))
    text = n.take_string(lib, err.value)
    if st != _st("TC_OK"):
        raise e.from_status(st, text)
    return core.Handle(ptr.value or 0)


# ---- authorization policies ---------------------------------------------------------------------

_PolicyKey = Tuple[Tuple[str, ...], bool, bool]
#: Compiled policies by request: a few distinct rules per service; bounded all the same.
_POLICIES: Dict[_PolicyKey, core.Policy] = {}
_POLICIES_MAX = 256
_policies_lock = threading.Lock()


def _policy(allowed: Iterable[str], allow_public: bool, allow_all_authenticated_users: bool) -> core.Policy:
    # (also called by the extension's check_authorization, for a request it has not seen)
    """The compiled policy of a request (tc_policy_new once per distinct request)."""
    principals = (allowed,) if isinstance(allowed, str) else tuple(allowed)
    key = (principals, bool(allow_public), bool(allow_all_authenticated_users))
    try:
        policy = _POLICIES.get(key)
    except TypeError:  # an unhashable principal: the library refuses it below
        policy, key = None, ((), False, False)
    if policy is not None:
        return policy
    request = json.dumps(
        {
            "allowed_principals": [p if isinstance(p, str) else str(p) for p in principals],
            "allow_public": key[1],
            "allow_all_authenticated_users": key[2],
        }
    ).encode()
    policy = core.Policy(request)
    if key[0] == principals:
        with _policies_lock:
            if len(_POLICIES) >= _POLICIES_MAX:  # bounded: drop the oldest
                _POLICIES.pop(next(iter(_POLICIES)), None)
            _POLICIES[key] = policy
    return policy


core.set_policy_factory(_policy)


# ---- checkers ------------------------------------------------------------------------------------


class TokenChecker:
    """Checks Globus Auth bearer tokens (drop-in for the original ``TokenChecker``).

    ``options`` are libtokenchecker's other configuration keys (``auth_url``, ``groups_url``,
    ``fetch_groups``, ``ca_certs``, ``scope_match``, ``leeway_s``, ``max_retries``, …;
    :func:`tokenchecker.library_info` lists them); unknown keys are refused with
    :class:`~tokenchecker.errors.InvalidConfigError`. ``strict=True`` makes token problems raise
    typed exceptions instead of the original's empty identity set.

    Creation with ``verify_credentials`` (the default) introspects a dummy token once and raises
    :class:`~tokenchecker.errors.CredentialsRejectedError` (a :class:`ConfigurationError`) when
    Globus Auth refuses the client credentials.

    ``cooperative`` says how the blocking methods wait on a cache miss. ``None`` (the default):
    cooperatively when the calling process is monkey-patched by gevent (``threading``) or
    eventlet (``thread``), so the worker's other greenlets run meanwhile; otherwise the thread
    blocks in the library. ``True``: always cooperatively (through gevent or eventlet when
    imported); ``False``: never. Cache hits are answered at once either way.

    ``client_id``, ``expected_scopes`` (configured order), ``default_expected_scopes`` (a
    frozenset), ``expected_audience``, ``scope_match`` and ``fetch_groups`` are what the library
    says the checker was configured with (``tc_checker_info``); :meth:`info` has the rest.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        expected_scopes: Union[str, Iterable[str]],
        expected_audience: Optional[str] = None,
        cache_config: Optional[Mapping[str, Any]] = None,
        *,
        strict: bool = False,
        cooperative: Optional[bool] = None,
        **options: Any,
    ) -> None:
        if cooperative is not None and not isinstance(cooperative, bool):
            raise e.InvalidConfigError(
                f"cooperative must be None, True or False, not {type(cooperative).__name__}"
            )
        lib = n.load()
        self._lib = lib
        self.strict = bool(strict)
        #: ``None``: wait cooperatively on a miss when gevent/eventlet monkey-patched threads.
        self.cooperative: Optional[bool] = cooperative
        config: Dict[str, Any] = {
            "client_id": client_id,
            "client_secret": client_secret,
            "expected_scopes": _scope_list(expected_scopes),
        }
        if expected_audience is not None:
            config["expected_audience"] = expected_audience
        config.update(options)
        if cache_config:  # as the original: an empty dict changes nothing
            config["cache_config"] = dict(cache_config)  # a copy: the caller's dict is never touched
        self._h: Optional[core.Handle] = _new_checker(lib, config)
        # what the library made of the configuration: never re-parsed here
        info = _call_json(lib, "tc_checker_info", self._h.ptr)
        self._config_info = info
        self.client_id: str = info["client_id"]
        #: The expected scopes in the configured order (named in HTTP insufficient_scope answers).
        self.expected_scopes: Tuple[str, ...] = tuple(info["expected_scopes"])
        self.default_expected_scopes: FrozenSet[str] = frozenset(self.expected_scopes)
        self.expected_audience: str = info["expected_audience"]
        self.scope_match: str = info["scope_match"]
        self.fetch_groups: str = info["fetch_groups"]
        # checkers for other expected scopes (check_token(t, expected_scopes=…)): derived, sharing
        # this one's HTTP client and request slots
        self._derived: Dict[FrozenSet[str], core.Handle] = {}
        self._derived_lock = threading.Lock()

    @classmethod
    def from_env(cls, **overrides: Any) -> TokenChecker:
        """A checker configured from the environment, as the CLI is: ``TC_CLIENT_ID``,
        ``TC_CLIENT_SECRET``, ``TC_SCOPES`` (space-separated), ``TC_AUTH_URL``,
        ``TC_GROUPS_URL`` (an empty variable counts as unset). ``overrides`` are any
        constructor arguments and options (``client_id=…``, ``expected_scopes=…``,
        ``auth_url=…``, ``strict=True``, …) and win over the environment. Raises
        :class:`~tokenchecker.errors.InvalidConfigError` naming what is missing."""
        from ._env import REQUIRED_ENV_KEYS, merged

        config = merged(overrides)
        missing = [(var, key) for var, key in REQUIRED_ENV_KEYS if config.get(key) is None]
        if missing:
            raise e.InvalidConfigError(
                f"set {', '.join(v for v, _ in missing)} in the environment (or pass "
                + ", ".join(k for _, k in missing)
                + "=...)"
            )
        client_id = config.pop("client_id")
        client_secret = config.pop("client_secret")
        scopes = config.pop("expected_scopes")
        return cls(client_id, client_secret, scopes, **config)

    def info(self) -> Dict[str, Any]:
        """The checker's effective configuration, without secrets (``tc_checker_info``):
        ``client_id``, ``expected_scopes``, ``expected_audience``, ``scope_match``,
        ``leeway_s``, ``fetch_groups``, ``auth_url``, ``groups_url``, ``call_timeout_ms``,
        ``max_token_bytes``, ``max_concurrent_requests``, ``stale_if_error_s``,
        ``refresh_ahead_s``."""
        return _call_json(self._lib, "tc_checker_info", self._handle().ptr)

    # ---- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Releases the native checker (once no call is using it). Later calls raise
        :class:`~tokenchecker.errors.CheckerClosedError`. The process-wide cache stays."""
        self._h = None
        with self._derived_lock:
            self._derived = {}

    def __enter__(self) -> TokenChecker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._h is None

    def _handle(self) -> core.Handle:
        h = self._h
        if h is None:
            raise e.CheckerClosedError("the checker is closed; create a new TokenChecker")
        return h

    def _derived_handle(self, scopes: FrozenSet[str]) -> core.Handle:
        base = self._handle()
        if scopes == self.default_expected_scopes:
            return base
        h = self._derived.get(scopes)
        if h is not None:
            return h
        with self._derived_lock:
            h = self._derived.get(scopes)
            if h is None:
                h = _derive(self._lib, base, {"expected_scopes": sorted(scopes)})
                if len(self._derived) >= 64:  # bounded: drop the oldest
                    self._derived.pop(next(iter(self._derived)))
                self._derived[scopes] = h
            return h

    # ---- misses (the cached paths are the core's) ----------------------------------------------

    def _check_blocking(self, h: core.Handle, token: bytes) -> Result:
        green = _green_mode(self.cooperative)
        if green is None:
            return core.check(h, token, True)  # the GIL is released meanwhile
        # a greenlet: wait for tc_check_async without blocking the hub
        st, text = _call_green(lambda cb, key: self._lib.tc_check_async(h.ptr, token, cb, key), green)
        return _after_async(
            st,
            text,
            lambda block: _in_real_thread(green, core.check, h, token, True) if block else core.check(h, token, False),
        )

    def _authorize_blocking(self, h: core.Handle, token: bytes, policy: core.Policy) -> Result:
        green = _green_mode(self.cooperative)
        if green is None:
            return core.authorize(h, token, policy, True)
        st, text = _call_green(
            lambda cb, key: self._lib.tc_authorize_async(h.ptr, token, policy.request, cb, key), green
        )
        return _after_async(
            st,
            text,
            lambda block: _in_real_thread(green, core.authorize, h, token, policy, True)
            if block
            else core.authorize(h, token, policy, False),
        )

    # ---- the original API --------------------------------------------------------------------

    def check_token(
        self, access_token: str, expected_scopes: Optional[Union[str, Iterable[str]]] = None
    ) -> AuthState:
        """An :class:`AuthState` for the token. Like the original, nothing is checked until one
        of its properties is read (and a token problem then gives empty sets, not an error,
        unless ``strict``). ``expected_scopes`` replaces the checker's for this check (through a
        derived checker that shares this one's HTTP client and ``max_concurrent_requests``)."""
        h = self._h
        if h is None:
            raise e.CheckerClosedError("the checker is closed; create a new TokenChecker")
        if expected_scopes is None:
            return AuthState(self, h, access_token, self.default_expected_scopes)
        scopes = frozenset(_scope_list(expected_scopes))
        return AuthState(self, self._derived_handle(scopes), access_token, scopes)

    # ---- beyond the original ------------------------------------------------------------------

    def check(
        self, access_token: str, expected_scopes: Optional[Union[str, Iterable[str]]] = None
    ) -> AuthState:
        """Checks now and raises the typed error of any failure (whatever ``strict`` says)."""
        state = self.check_token(access_token, expected_scopes)
        state._resolve(True)
        return state

    async def check_token_async(
        self, access_token: str, expected_scopes: Optional[Union[str, Iterable[str]]] = None
    ) -> AuthState:
        """Checks without blocking the event loop: a cached answer at once, otherwise on the
        library's own runtime (``tc_check_async``), the result delivered into this loop. The
        returned state is already checked; token problems follow ``strict`` as in check_token."""
        state = self.check_token(access_token, expected_scopes)
        token = _encode_token(access_token)
        if 0 in token:  # a NUL byte: as an empty token, per strict
            state._record(_nul_error("the token"), self.strict)
            return state
        h = state._handle
        result = core.check(h, token, False)
        if result[0] == _st("TC_WOULD_BLOCK"):
            st, text = await _call_async(lambda cb, key: self._lib.tc_check_async(h.ptr, token, cb, key))
            result = await _after_async_aio(st, text, lambda block: core.check(h, token, block))
        state._settle(result, self.strict)
        return state

    def authorize(
        self,
        access_token: str,
        allowed_principals: Iterable[str],
        allow_public: bool = False,
        allow_all_authenticated_users: bool = False,
    ) -> AuthState:
        """Checks the token, then whether the caller is one of ``allowed_principals`` (a policy
        compiled once per distinct request, ``tc_authorize_answer``). Raises the typed error of
        any failure: ``NotAuthorizedError`` when no principal matched, ``AuthUnavailableError``
        when only unavailable groups could decide. The state's ``matched`` names the principal
        that matched."""
        state = AuthState(self, self._handle(), access_token, self.default_expected_scopes)
        state._authorize(_policy(allowed_principals, allow_public, allow_all_authenticated_users), True)
        return state

    async def authorize_async(
        self,
        access_token: str,
        allowed_principals: Iterable[str],
        allow_public: bool = False,
        allow_all_authenticated_users: bool = False,
    ) -> AuthState:
        """:meth:`authorize` without blocking the event loop (``tc_authorize_async``)."""
        h = self._handle()
        token = _token_bytes(access_token)
        policy = _policy(allowed_principals, allow_public, allow_all_authenticated_users)
        state = AuthState(self, h, access_token, self.default_expected_scopes)
        result = core.authorize(h, token, policy, False)
        if result[0] == _st("TC_WOULD_BLOCK"):
            st, text = await _call_async(
                lambda cb, key: self._lib.tc_authorize_async(h.ptr, token, policy.request, cb, key)
            )
            result = await _after_async_aio(st, text, lambda block: core.authorize(h, token, policy, block))
        state._authorized(result, True)
        return state

    def dependent_token(self, access_token: str, scope: str) -> Dict[str, Any]:
        """A dependent token for ``scope`` (a scope string or a resource server name):
        ``{"access_token", "scope", "resource_server", "token_type", "expires_at", "expires_in"}``.
        It is a secret. Raises ``NotAuthorizedError`` when the grant has none for that scope."""
        h = self._handle()
        token = _token_bytes(access_token)
        sb = _arg_bytes(scope, "the scope")
        lib = self._lib
        green = _green_mode(self.cooperative)
        if green is not None:  # no cache-only variant: always through the runtime
            st, text = _call_green(lambda cb, key: lib.tc_dependent_token_async(h.ptr, token, sb, cb, key), green)
        else:
            out = c_void_p()
            st = lib.tc_dependent_token(h.ptr, token, sb, byref(out))
            text = n.take_string(lib, out.value)
        if st != _st("TC_OK"):
            raise e.from_status(st, text)
        doc: Dict[str, Any] = json.loads(text)
        return doc

    async def dependent_token_async(self, access_token: str, scope: str) -> Dict[str, Any]:
        """:meth:`dependent_token` without blocking the event loop."""
        h = self._handle()
        token = _token_bytes(access_token)
        sb = _arg_bytes(scope, "the scope")
        st, text = await _call_async(
            lambda cb, key: self._lib.tc_dependent_token_async(h.ptr, token, sb, cb, key)
        )
        if st != _st("TC_OK"):
            raise e.from_status(st, text)
        doc: Dict[str, Any] = json.loads(text)
        return doc

    def groups(self, access_token: str) -> FrozenSet[str]:
        """The caller's group principals (``urn:globus:groups:id:<id>``), fetched through the
        dependent token and the Groups API (cached). Raises the typed error of any failure:
        ``AuthUnavailableError`` when Groups is down, ``NotAuthorizedError`` when this service's
        scope lacks the Groups dependency, a token error when the token is refused."""
        return self._groups(self._handle(), _token_bytes(access_token))

    def _groups(self, h: core.Handle, token: bytes) -> FrozenSet[str]:
        lib = self._lib
        green = _green_mode(self.cooperative)
        st: int
        text: str
        if green is not None and green != "select" and _groups_would_block(h, token):
            # There is no tc_groups_async: the blocking call runs on the hub's pool of real
            # threads while this greenlet waits.
            st, text = _in_real_thread(green, _groups_call, lib, h.ptr, token)
        else:
            st, text = _groups_call(lib, h.ptr, token)
        if st != _st("TC_OK"):
            raise e.from_status(st, text)
        return frozenset([GROUP_PREFIX + g for g in json.loads(text)["groups"]])

    def purge(self, access_token: str) -> None:
        """Forgets everything cached for one token, in every cache layer."""
        st = self._lib.tc_purge(self._handle().ptr, _token_bytes(access_token))
        if st != _st("TC_OK"):
            raise e.from_status(st)

    def purge_identity(self, identity: str) -> None:
        """Forgets every cached token of an identity (an id or its identity principal)."""
        st = self._lib.tc_purge_identity(self._handle().ptr, _arg_bytes(identity, "the identity id"))
        if st != _st("TC_OK"):
            raise e.from_status(st)

    @staticmethod
    def stats() -> Dict[str, Any]:
        """Process-wide counters (see :func:`tokenchecker.stats`)."""
        return stats()

    @staticmethod
    def metrics() -> str:
        """Process-wide counters in the Prometheus text format (see :func:`tokenchecker.metrics`)."""
        return metrics()

    def __repr__(self) -> str:
        state = "closed" if self._h is None else "open"
        return f"<TokenChecker client_id={self.client_id!r} {state}>"


def _cache_meta(text: str) -> Tuple[Optional[str], int]:
    """The cache source and age of a result document (what an async call answered)."""
    try:
        cache = json.loads(text).get("cache") or {}
        return cache.get("source"), int(cache.get("age_ms") or 0)
    except (ValueError, AttributeError, TypeError):
        return None, 0


def _after_async(st: int, text: str, cached: Callable[[bool], Result]) -> Result:
    """After an async call: its error, or the answer it put in the cache (read through the
    core, from the answer's fields), with the call's own cache source and age. ``cached(False)``
    reads the cache; ``cached(True)`` asks again, blocking, should the entry be gone already."""
    if st != _st("TC_OK"):
        return st, None, None, 0, text
    result = cached(False)
    if result[0] == _st("TC_WOULD_BLOCK"):  # evicted (or never in-process) meanwhile
        result = cached(True)
    if result[0] != _st("TC_OK"):
        return result
    source, age = _cache_meta(text)
    return result[0], result[1], source or result[2], age, result[4]


async def _after_async_aio(st: int, text: str, cached: Callable[[bool], Result]) -> Result:
    """:func:`_after_async` on an event loop: the blocking retry runs in the loop's executor."""
    if st != _st("TC_OK"):
        return st, None, None, 0, text
    result = cached(False)
    if result[0] == _st("TC_WOULD_BLOCK"):
        result = await asyncio.get_running_loop().run_in_executor(None, cached, True)
    if result[0] != _st("TC_OK"):
        return result
    source, age = _cache_meta(text)
    return result[0], result[1], source or result[2], age, result[4]


# ---- async plumbing ------------------------------------------------------------------------------
#
# The *_async entry points call _CALLBACK on one of the library's runtime threads with the key of
# a pending entry: an asyncio (loop, future), or a _Green waiter (a greenlet waiting on a pipe).


class _Green:
    """A greenlet waiting on ``rfd`` for a callback: the callback stores the outcome, then
    writes one byte to ``wfd`` and closes it. Whoever takes the entry out of ``_pending`` owns
    ``wfd``; the waiter owns ``rfd`` (-1 once it closed it)."""

    __slots__ = ("rfd", "wfd", "status", "text")

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd = rfd
        self.wfd = wfd
        self.status = n.STATUS.get("TC_PANIC", -1)
        self.text = ""


_Pending = Union[Tuple[asyncio.AbstractEventLoop, asyncio.Future[Tuple[int, str]]], _Green]
_pending: Dict[int, _Pending] = {}
_keys = itertools.count(1)

# The system calls themselves, whatever monkey-patching did to ``os`` (eventlet greens
# os.read/os.write): the callback runs on a foreign thread and must never touch a hub.
_posix: Any = sys.modules.get("posix", os)
_raw_pipe: Callable[[], Tuple[int, int]] = _posix.pipe
_raw_read: Callable[[int, int], bytes] = _posix.read
_raw_write: Callable[[int, bytes], int] = _posix.write
_raw_close: Callable[[int], None] = _posix.close

# The callback wakes a waiter with libc's write and close called WITHOUT releasing the GIL
# (ctypes.PyDLL): os.write would release it, and once the waiter is awake the interpreter may
# start finalizing before the callback gets the GIL back, which ends the library's thread with
# pthread_exit in the middle of the callback (the library then aborts the process: "FATAL:
# exception not rethrown"). After the wake-up the callback only returns.
_libc = ctypes.PyDLL(None)
_wake_write = _libc.write
_wake_write.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
_wake_write.restype = ctypes.c_ssize_t
_wake_close = _libc.close
_wake_close.argtypes = [ctypes.c_int]
_wake_close.restype = ctypes.c_int


def _deliver(fut: asyncio.Future[Tuple[int, str]], status: int, text: str) -> None:
    if not fut.done():
        fut.set_result((status, text))


def _complete(entry: _Pending, status: int, text: str) -> None:
    if isinstance(entry, _Green):
        entry.status, entry.text = status, text
        # one byte into an empty pipe: never blocks; EPIPE (ignored) when the waiter gave up
        # (killed, timed out) and closed its end
        _wake_write(entry.wfd, b"\x01", 1)
        _wake_close(entry.wfd)
        return
    loop, fut = entry
    try:
        loop.call_soon_threadsafe(_deliver, fut, status, text)
    except RuntimeError:  # the loop was closed meanwhile: nobody is waiting
        pass


def _on_done(user_data: Optional[int], status: int, json_ptr: Optional[int]) -> None:
    # On one of the library's runtime threads (ctypes holds the GIL for us here).
    try:
        lib = n.load()
        text = n.take_string(lib, json_ptr)
        entry = _pending.pop(user_data or 0, None)
        if entry is not None:
            _complete(entry, status, text)
    except BaseException:  # noqa: BLE001 - never let an exception into the C runtime
        pass


_CALLBACK = n.CALLBACK(_on_done)  # lives as long as the module: the library may call it anytime


async def _call_async(start: Callable[[Any, c_void_p], int]) -> Tuple[int, str]:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Tuple[int, str]] = loop.create_future()
    key = next(_keys)
    _pending[key] = (loop, fut)
    try:
        st = start(_CALLBACK, c_void_p(key))
    except BaseException:
        _pending.pop(key, None)
        raise
    if st != _st("TC_OK"):  # not started: the callback will never come
        _pending.pop(key, None)
        raise e.from_status(st)
    return await fut


# ---- cooperative (gevent, eventlet) waiting ------------------------------------------------------


def _green_mode(setting: Optional[bool]) -> Optional[str]:
    """How a miss waits: ``None`` (the thread blocks in the library), ``"gevent"`` or
    ``"eventlet"`` (the greenlet waits on its hub), ``"select"`` (``cooperative=True`` without
    either: a plain wait). Only called on a miss; a few dict lookups."""
    if setting is False:
        return None
    mods = sys.modules
    gm = mods.get("gevent.monkey")
    if gm is not None and gm.is_module_patched("threading"):
        return "gevent"
    ep = mods.get("eventlet.patcher")
    if ep is not None and ep.is_monkey_patched("thread"):
        return "eventlet"
    if setting is None:
        return None
    if "gevent" in mods:
        return "gevent"
    if "eventlet" in mods:
        return "eventlet"
    return "select"


def _wait_readable(fd: int, mode: str) -> None:
    if mode == "gevent":
        import_module("gevent.socket").wait_read(fd)
    elif mode == "eventlet":
        import_module("eventlet.hubs").trampoline(fd, read=True)
    else:
        select.select([fd], [], [])


def _call_green(start: Callable[[Any, c_void_p], int], mode: str) -> Tuple[int, str]:
    """Starts an async call and waits for its callback on a pipe: the greenlet sleeps on its hub
    until the callback (on a library thread) writes the byte; no other greenlet is held up."""
    rfd, wfd = _raw_pipe()  # close-on-exec
    waiter = _Green(rfd, wfd)
    key = next(_keys)
    _pending[key] = waiter
    started = False
    try:
        st = start(_CALLBACK, c_void_p(key))
        if st != _st("TC_OK"):  # not started: the callback will never come
            raise e.from_status(st)
        started = True
        _wait_readable(rfd, mode)
        _raw_read(rfd, 1)
    finally:
        if not started and _pending.pop(key, None) is not None:
            _raw_close(wfd)
        # Interrupted after the start (a gevent.Timeout, a kill): the entry stays pending; the
        # callback will find the read end closed (EPIPE, ignored) and close the write end.
        waiter.rfd = -1
        _raw_close(rfd)
    return waiter.status, waiter.text


# The cache-only authorization with a group no caller belongs to answers from memory exactly
# when the token and its groups (or a cached answer that decides) are in the in-process cache:
# then tc_groups does not wait either.
_GROUPS_PROBE = (GROUP_PREFIX + "00000000-0000-0000-0000-000000000000",)


def _groups_would_block(h: core.Handle, token: bytes) -> bool:
    return core.authorize(h, token, _policy(_GROUPS_PROBE, False, False), False)[0] == _st("TC_WOULD_BLOCK")


def _groups_call(lib: ctypes.CDLL, ptr: int, token: bytes) -> Tuple[int, str]:
    out = c_void_p()
    st = lib.tc_groups(ptr, token, byref(out))
    return int(st), n.take_string(lib, out.value)


def _in_real_thread(mode: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Runs a blocking call on the hub's pool of OS threads; the greenlet waits cooperatively
    (``select`` mode, without gevent or eventlet: in this thread)."""
    if mode == "gevent":
        return import_module("gevent").get_hub().threadpool.apply(fn, args)
    if mode == "eventlet":
        return import_module("eventlet.tpool").execute(fn, *args)
    return fn(*args)


# ---- fork ----------------------------------------------------------------------------------------


def _after_fork_in_child() -> None:
    # The child has only the thread that forked. The library gives it a new runtime: calls in
    # flight in the parent never call back here, so whoever waits for one in the child (a
    # greenlet or a loop of the forking thread) gets an error now instead of waiting forever.
    # The answer memo is emptied too: the child's answers are its own.
    try:
        core.memo_clear()
    except Exception:  # noqa: BLE001 - never fail a fork
        pass
    text = json.dumps(
        {
            "error": {
                "code": "TC_AUTH_UNAVAILABLE",
                "message": "the process forked while this call was in flight; call again in the child",
            }
        }
    )
    for key in list(_pending):
        entry = _pending.pop(key, None)
        try:
            if isinstance(entry, _Green):
                _wake_in_child(entry, text)
            elif entry is not None:
                _complete(entry, n.STATUS["TC_AUTH_UNAVAILABLE"], text)
        except Exception:  # noqa: BLE001 - never fail a fork
            pass


def _wake_in_child(waiter: _Green, text: str) -> None:
    # The pipe is shared with the parent, whose waiter still gets its own callback there: the
    # child's waiter is moved onto a pipe of its own (the same descriptor number, which gevent's
    # hub watches again after the fork) and woken on it.
    _raw_close(waiter.wfd)  # the child's copy
    if waiter.rfd < 0:  # the waiter was gone already
        return
    r, w = _raw_pipe()
    try:
        os.dup2(r, waiter.rfd, inheritable=False)
        waiter.status, waiter.text = n.STATUS["TC_AUTH_UNAVAILABLE"], text
        _raw_write(w, b"\x01")
    finally:
        _raw_close(r)
        _raw_close(w)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ---- AuthState -----------------------------------------------------------------------------------


class AuthState(core.State):
    """What a check of one token found (the original ``AuthState``).

    ``identities``, ``principals`` and ``groups`` are frozensets of principal URNs;
    ``effective_identity`` the caller's identity principal. In the default mode a token that
    fails a rule gives empty sets and ``None`` (as the original), with the typed error in
    ``errors``; with ``strict`` the error is raised. Unavailable services always raise.

    ``identities`` and ``effective_identity`` (and the cached check behind them) are the core's
    (``_core``); the rest is here.
    """

    __slots__ = ()

    # ---- resolution (the core calls these when the cache cannot answer) ------------------------

    def _record(self, err: e.TokenCheckerError, strict: bool) -> None:
        """A failure of this state's check: kept (``errors``, ``error``), raised per ``strict``;
        the errors the original raised too are always raised."""
        always = isinstance(err, _ALWAYS_RAISE)
        if not always:
            self._error = err
            self.errors.append(err)
        if strict or always:
            raise err

    def _settle(self, result: Result, strict: bool) -> Optional[core.Info]:
        st, info, source, age, extra = result
        if st == _st("TC_OK"):
            self._info = info
            self._source = source
            self._age_ms = age
            return info
        self._record(e.from_status(st, extra or ""), strict)
        return None

    def _resolve_slow(self, strict: bool = False) -> Optional[core.Info]:
        info = self._info
        if info is not None:
            return info
        checker = self._checker
        strict = strict or checker.strict
        if self._error is not None:  # already failed: never re-checked by this state
            if strict:
                raise self._error
            return None
        try:
            token = _token_bytes(self.bearer_token)
        except e.InvalidArgumentError as err:  # refused as an empty token is
            self._record(err, strict)
            return None
        result = core.check(self._handle, token, False)
        if result[0] == _st("TC_WOULD_BLOCK"):
            result = checker._check_blocking(self._handle, token)
        return self._settle(result, strict)

    def _miss(self, token: bytes, strict: bool) -> Optional[core.Info]:
        checker = self._checker
        return self._settle(checker._check_blocking(self._handle, token), strict or checker.strict)

    def _fail(self, status: int, document: str, strict: bool) -> Optional[core.Info]:
        return self._settle((status, None, None, 0, document), strict or self._checker.strict)

    def _authorized(self, result: Result, raising: bool) -> bool:
        """The outcome of an authorization: True, False (no principal matched, or a failure
        when not ``raising``: kept in ``errors``), or the typed error raised."""
        st = result[0]
        if st == _st("TC_OK"):
            self._settle(result, False)
            self._matched = result[4]
            return True
        checker = self._checker
        strict = raising or checker.strict
        if st == _st("TC_NOT_AUTHORIZED"):
            if raising:
                self._record(e.from_status(st, result[4] or ""), True)
            return False
        if st == _st("TC_AUTH_UNAVAILABLE") and not raising:
            # the token's check, or the groups that alone could decide? The first always raises
            # (as the original's introspection did); unavailable groups count as none (an error
            # in ``errors``), as the original's
            if self._resolve(strict) is None:
                return False
            err = e.from_status(st, result[4] or "")
            self.errors.append(err)
            if strict:
                raise err
            return False
        self._settle(result, strict)
        return False

    def _authorize_slow(
        self, policy: core.Policy, raising: bool, token: Optional[bytes], status: Optional[int], document: Optional[str]
    ) -> bool:
        checker = self._checker
        if token is None:
            if self._error is not None:  # the check failed already: never re-checked
                if raising or checker.strict:
                    raise self._error
                return False
            try:
                token = _token_bytes(self.bearer_token)
            except e.InvalidArgumentError as err:
                self._record(err, raising or checker.strict)
                return False
            result = core.authorize(self._handle, token, policy, False)
        else:
            result = (status if status is not None else _st("TC_WOULD_BLOCK"), None, None, 0, document)
        if result[0] == _st("TC_WOULD_BLOCK"):
            result = checker._authorize_blocking(self._handle, token, policy)
        return self._authorized(result, raising)

    # ---- the original's API ------------------------------------------------------------------------

    def introspect_token(self) -> Optional[Dict[str, Any]]:
        """The introspection answer as the server sent it: every member (``active``, ``scope``
        as a space-separated string, ``sub``, ``username``, ``name``, ``email``, ``client_id``,
        ``aud``, ``exp``, ``nbf``, ``iat``, ``identity_set``, and any other, such as ``iss`` or
        ``token_type``), or ``None`` when a rule failed."""
        info = self._info or self._resolve()
        if info is None:
            return None
        doc: Dict[str, Any] = json.loads(info.introspection())
        return doc

    @property
    def groups(self) -> FrozenSet[str]:
        """Group principals, fetched once per state (the library caches them). A failure gives
        an empty set with the error in ``errors`` (the original's behaviour), or raises with
        ``strict``."""
        groups = self._groups
        if groups is not None:
            return groups
        info = self._info or self._resolve()
        if info is None:
            return _EMPTY
        checker: TokenChecker = self._checker
        try:
            groups = checker._groups(self._handle, _token_bytes(self.bearer_token))
        except e.TokenCheckerError as err:
            if checker.strict or isinstance(err, (e.PanicError, e.CheckerClosedError)):
                raise
            self.errors.append(err)
            return _EMPTY
        self._groups = groups
        return groups

    @property
    def principals(self) -> FrozenSet[str]:
        """Identities and groups (reading it fetches the groups, as the original did)."""
        return self.identities.union(self.groups)

    # check_authorization(allowed_principals, allow_public=False, allow_all_authenticated_users=False)
    # is the core's (the extension's in C; _pycore's calls this): the original semantics, with
    # ``public`` counting only with ``allow_public`` (even for a token that fails a rule),
    # ``all_authenticated_users`` only with ``allow_all_authenticated_users`` and an identity;
    # otherwise an identity or group principal must match. Groups are fetched only when the list
    # names a group and nothing cheaper matched. The library decides, with a policy compiled
    # once per distinct request; ``matched`` then names the principal that matched.

    def _check_authorization_slow(
        self, allowed_principals: Iterable[str], allow_public: bool = False, allow_all_authenticated_users: bool = False
    ) -> bool:
        allowed = allowed_principals
        if not isinstance(allowed, (str, list, tuple, frozenset, set)):
            allowed = tuple(allowed)  # read once
        if allow_public and (allowed == "public" if isinstance(allowed, str) else "public" in allowed):
            return True
        policy = _policy(allowed, allow_public, allow_all_authenticated_users)
        return self._authorize(policy, False)

    def get_dependent_tokens(self) -> DependentTokens:
        """The dependent tokens, looked up like globus-sdk's ``OAuthDependentTokenResponse``:
        ``by_resource_server[rs]`` / ``by_scopes[scope]`` (``KeyError`` when the grant has none).
        Each lookup asks the library (cached for the dependent token's lifetime)."""
        return DependentTokens(self)

    def get_authorizer_for_scope(self, scope: str) -> Any:
        """A globus-sdk ``AccessTokenAuthorizer`` for a dependent token of ``scope``, or
        ``None`` when there is none (needs ``globus-sdk`` installed)."""
        try:
            tok = self.get_dependent_tokens().by_scopes[scope]
        except KeyError:
            return None
        from globus_sdk import AccessTokenAuthorizer  # type: ignore[import-not-found]

        return AccessTokenAuthorizer(tok["access_token"])

    @property
    def expected_audience(self) -> str:
        return str(self._checker.expected_audience)

    # ---- beyond the original ---------------------------------------------------------------------

    @property
    def valid(self) -> bool:
        """Whether the token passed every rule (checks it if not done yet)."""
        return (self._info or self._resolve()) is not None

    @property
    def error(self) -> Optional[e.TokenCheckerError]:
        """The typed error of a failed check (``None`` when valid or not checked yet)."""
        err: Optional[e.TokenCheckerError] = self._error
        return err

    def raise_for_error(self) -> AuthState:
        """Raises the check's typed error, if any; returns the state otherwise."""
        self._resolve(True)
        return self

    @property
    def username(self) -> Optional[str]:
        info = self._info or self._resolve()
        return info.username if info is not None else None

    @property
    def name(self) -> Optional[str]:
        info = self._info or self._resolve()
        return info.name if info is not None else None

    @property
    def email(self) -> Optional[str]:
        info = self._info or self._resolve()
        return info.email if info is not None else None

    @property
    def client_id(self) -> Optional[str]:
        info = self._info or self._resolve()
        return info.client_id if info is not None else None

    @property
    def identity_ids(self) -> Tuple[str, ...]:
        """The bare identity ids, in the server's order."""
        info = self._info or self._resolve()
        return info.identity_ids if info is not None else ()

    @property
    def sub(self) -> Optional[str]:
        info = self._info or self._resolve()
        return info.sub if info is not None else None

    @property
    def scopes(self) -> FrozenSet[str]:
        info = self._info or self._resolve()
        return info.scopes if info is not None else _EMPTY

    @property
    def audience(self) -> Tuple[str, ...]:
        info = self._info or self._resolve()
        return info.aud if info is not None else ()

    @property
    def expires_at(self) -> Optional[int]:
        """The token's ``exp`` (Unix seconds)."""
        info = self._info or self._resolve()
        return info.exp if info is not None else None

    @property
    def matched(self) -> Optional[str]:
        """After :meth:`TokenChecker.authorize` (or a successful :meth:`check_authorization`):
        the allowed principal that matched (Go's ``Matched``, Node's ``authorization.matched``)."""
        return self._matched

    @property
    def matched_principal(self) -> Optional[str]:
        """The same as :attr:`matched` (its earlier name)."""
        return self._matched

    @property
    def cache_source(self) -> Optional[str]:
        """Where the answer came from: ``network``, ``coalesced``, ``memory``, ``near``,
        ``redis``, ``memcached`` or ``stale`` (``library_info()["sources"]``; ``None``
        before/without a successful check)."""
        if self._info is None and self._resolve() is None:
            return None
        return self._source

    @property
    def cache_age_ms(self) -> Optional[int]:
        if self._info is None and self._resolve() is None:
            return None
        return int(self._age_ms)

    def __repr__(self) -> str:
        return f"<AuthState for client_id={self._checker.client_id!r}>"  # never the token


class _DependentTokenLookup(Mapping[str, Dict[str, Any]]):
    """``by_resource_server`` / ``by_scopes``: each lookup asks the library (which caches the
    dependent tokens for their lifetime); iteration lists the keys found so far."""

    def __init__(self, state: AuthState, by_scope: bool) -> None:
        self._state = state
        self._by_scope = by_scope
        self._found: Dict[str, None] = {}

    def __getitem__(self, key: str) -> Dict[str, Any]:
        state = self._state
        checker: TokenChecker = state._checker
        try:
            doc = checker.dependent_token(state.bearer_token, key)
        except e.NotAuthorizedError:
            raise KeyError(key) from None
        if self._by_scope and not set(key.split()) <= set(str(doc.get("scope", "")).split()):
            raise KeyError(key)
        if not self._by_scope and doc.get("resource_server") != key:
            raise KeyError(key)
        doc["expires_at_seconds"] = doc.get("expires_at")
        self._found[key] = None
        return doc

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        try:
            self[key]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._found))

    def __len__(self) -> int:
        return len(self._found)


class DependentTokens:
    """globus-sdk-like access to the dependent tokens of a state's token: ``by_resource_server``
    and ``by_scopes`` map a resource server / scope string to ``{"access_token", "scope",
    "resource_server", "token_type", "expires_at_seconds", "expires_in"}``. Only looked-up keys
    are known (iteration lists those): the library fetches one scope's token at a time."""

    def __init__(self, state: AuthState) -> None:
        self.by_resource_server: Mapping[str, Dict[str, Any]] = _DependentTokenLookup(state, False)
        self.by_scopes: Mapping[str, Dict[str, Any]] = _DependentTokenLookup(state, True)


# ---- process-wide --------------------------------------------------------------------------------


def stats() -> Dict[str, Any]:
    """Process-wide counters of the library (``tc_stats``): checks, hits, misses, coalesced
    waits, requests and errors per endpoint, backend counters, the cache, … plus ``"python"``:
    the binding's ``implementation`` and its answer memo (``answer_memo_entries``,
    ``answer_memo_bytes``, ``answer_memo_max_bytes``, ``answer_memo_entry_overhead``, hits,
    misses, evictions)."""
    lib = n.load()
    out = c_void_p()
    st = lib.tc_stats(byref(out))
    text = n.take_string(lib, out.value)
    if st != _st("TC_OK"):
        raise e.from_status(st, text)
    doc: Dict[str, Any] = json.loads(text)
    memo = core.memo_stats()
    doc["python"] = {
        "implementation": IMPLEMENTATION,
        "answer_memo_entries": memo["entries"],
        "answer_memo_bytes": memo["bytes"],
        "answer_memo_max_bytes": memo["max_bytes"],
        "answer_memo_entry_overhead": memo["entry_overhead"],
        "answer_memo_hits": memo["hits"],
        "answer_memo_misses": memo["misses"],
        "answer_memo_evictions": memo["evictions"],
    }
    return doc


def metrics() -> str:
    """The same counters and latency histograms in the Prometheus text format (``tc_metrics``)."""
    lib = n.load()
    out = c_void_p()
    st = lib.tc_metrics(byref(out))
    text = n.take_string(lib, out.value)
    if st != _st("TC_OK"):
        raise e.from_status(st, text)
    return text
