"""TokenChecker and AuthState: the original Globus Action Provider Tools API over libtokenchecker."""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import json
import os
import select
import sys
import threading
from collections import OrderedDict
from ctypes import byref, c_size_t, c_void_p
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

IDENTITY_PREFIX = "urn:globus:auth:identity:"
GROUP_PREFIX = "urn:globus:groups:id:"
GROUPS_SCOPE = "urn:globus:auth:scope:groups.api.globus.org:view_my_groups_and_memberships"

_EMPTY: FrozenSet[str] = frozenset()

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


# ---- decoded answers -----------------------------------------------------------------------------


class _Info:
    """What a check found, decoded once: from an answer's stable text (memoised by answer id)
    or from a result document. Immutable once built; shared between AuthStates."""

    __slots__ = (
        "data",
        "sub",
        "effective_identity",
        "identities",
        "scopes",
        "groups",
        "groups_status",
        "groups_error",
    )

    def __init__(self, data: Dict[str, Any]) -> None:
        self.data = data
        sub = data.get("sub")
        self.sub: Optional[str] = sub if isinstance(sub, str) else None
        self.effective_identity: Optional[str] = IDENTITY_PREFIX + sub if isinstance(sub, str) else None
        self.identities: FrozenSet[str] = frozenset(
            [IDENTITY_PREFIX + i for i in data.get("identities") or ()]
        )
        self.scopes: FrozenSet[str] = frozenset(data.get("scopes") or ())
        groups = data.get("groups")
        self.groups: Optional[FrozenSet[str]] = (
            frozenset([GROUP_PREFIX + g for g in groups]) if isinstance(groups, list) else None
        )
        self.groups_status: str = str(data.get("groups_status") or "not_fetched")
        ge = data.get("groups_error")
        self.groups_error: Optional[str] = ge if isinstance(ge, str) else None


#: answer id -> _Info. The ids are never reused within a process, so an entry is never stale;
#: bounded, oldest first out (an OrderedDict: evicting from a plain dict's front gets slower
#: and slower until it is resized). This is the binding's only cache.
_MEMO: OrderedDict[int, _Info] = OrderedDict()
_MEMO_MAX = int(os.environ.get("TOKENCHECKER_PY_MEMO_MAX", "4096") or 4096)

_SOURCES: Dict[int, str] = {}


def _source_name(addr: Optional[int]) -> Optional[str]:
    if not addr:
        return None
    name = _SOURCES.get(addr)
    if name is None:
        name = ctypes.string_at(addr).decode("ascii", "replace")
        _SOURCES[addr] = name
    return name


def _memo_put(aid: int, info: _Info) -> None:
    memo = _MEMO
    while len(memo) >= _MEMO_MAX:
        try:
            memo.popitem(last=False)
        except KeyError:  # emptied by another thread meanwhile
            break
    memo[aid] = info


# ---- the hot path --------------------------------------------------------------------------------
#
# ctypes calls without argtypes convert their (already C-typed) arguments much faster than calls
# through argtypes; the hot functions are bound a second time that way. Each thread reuses its own
# out-parameters (a call releases the GIL, so they cannot be shared between threads).


class _Scratch(threading.local):
    def __init__(self) -> None:
        ans = c_void_p()
        meta = n.tc_answer_meta()
        err = c_void_p()
        self.t = (ans, meta, err, byref(ans), byref(meta), byref(err))


_scratch = _Scratch()
_fast_try: Any = None
_fast_id: Any = None
_fast_free: Any = None
_fast_text: Any = None


def _bind_fast(lib: ctypes.CDLL) -> None:
    global _fast_try, _fast_id, _fast_free, _fast_text
    if _fast_try is not None:
        return
    f_try = lib["tc_try_check_answer"]
    f_try.restype = ctypes.c_uint32
    f_id = lib["tc_answer_id"]
    f_id.restype = ctypes.c_uint64
    f_free = lib["tc_answer_free"]
    f_free.restype = None
    f_text = lib["tc_answer_text"]
    f_text.restype = c_void_p
    _fast_id, _fast_free, _fast_text = f_id, f_free, f_text
    _fast_try = f_try


def _decode_answer(ans: c_void_p, aid: int) -> _Info:
    size = c_size_t()
    ptr = _fast_text(ans, byref(size))
    info = _Info(json.loads(ctypes.string_at(ptr, size.value)))
    _memo_put(aid, info)
    return info


# ---- checkers ------------------------------------------------------------------------------------


class _Handle:
    """One ``tc_checker*``. Freed (``tc_free``) when the last Python reference goes: every call
    holds a reference for its duration, so a concurrent ``close()`` never frees it under a call."""

    __slots__ = ("ptr", "lib")

    def __init__(self, lib: ctypes.CDLL, ptr: c_void_p) -> None:
        self.lib = lib
        self.ptr = ptr

    def __del__(self) -> None:
        ptr = self.ptr
        self.ptr = c_void_p()
        if ptr.value:
            try:
                self.lib.tc_free(ptr)
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass


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


def _new_checker(lib: ctypes.CDLL, config: Dict[str, Any]) -> _Handle:
    doc = json.dumps(config, default=_jsonable).encode("utf-8")
    ptr = c_void_p()
    err = c_void_p()
    st = lib.tc_new(doc, byref(ptr), byref(err))
    text = n.take_string(lib, err.value)
    if st != n.TC_OK:
        raise e.from_status(st, text)
    return _Handle(lib, ptr)


_Check = Tuple[Optional[_Info], Optional[e.TokenCheckerError], Any]


class TokenChecker:
    """Checks Globus Auth bearer tokens (drop-in for the original ``TokenChecker``).

    ``options`` are libtokenchecker's other configuration keys (``auth_url``, ``groups_url``,
    ``fetch_groups``, ``ca_certs``, ``scope_match``, ``leeway_s``, ``max_retries``, …); unknown
    keys are refused with :class:`~tokenchecker.errors.InvalidConfigError`. ``strict=True`` makes
    token problems raise typed exceptions instead of the original's empty identity set.

    Creation with ``verify_credentials`` (the default) introspects a dummy token once and raises
    :class:`~tokenchecker.errors.CredentialsRejectedError` (a :class:`ConfigurationError`) when
    Globus Auth refuses the client credentials.

    ``cooperative`` says how the blocking methods wait on a cache miss. ``None`` (the default):
    cooperatively when the calling process is monkey-patched by gevent (``threading``) or
    eventlet (``thread``), so the worker's other greenlets run meanwhile; otherwise the thread
    blocks in the library. ``True``: always cooperatively (through gevent or eventlet when
    imported); ``False``: never. Cache hits are answered at once either way.
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
        self.client_id = client_id
        scopes = _scope_list(expected_scopes)
        self.default_expected_scopes: FrozenSet[str] = frozenset(scopes)
        #: The expected scopes in the configured order (named in HTTP insufficient_scope answers).
        self.expected_scopes: Tuple[str, ...] = tuple(dict.fromkeys(scopes))
        self.expected_audience: str = client_id if expected_audience is None else expected_audience
        self.strict = bool(strict)
        #: ``None``: wait cooperatively on a miss when gevent/eventlet monkey-patched threads.
        self.cooperative: Optional[bool] = cooperative
        config: Dict[str, Any] = {
            "client_id": client_id,
            "client_secret": client_secret,
            "expected_scopes": scopes,
        }
        if expected_audience is not None:
            config["expected_audience"] = expected_audience
        config.update(options)
        # Config of the derived checkers (other expected_scopes per check_token call): the same
        # service, without re-creating the shared cache or re-verifying the credentials.
        self._base_config = dict(config)
        self._base_config["verify_credentials"] = False
        if cache_config:  # as the original: an empty dict changes nothing
            config["cache_config"] = dict(cache_config)  # a copy: the caller's dict is never touched
        self._h: Optional[_Handle] = _new_checker(lib, config)
        self._derived: Dict[FrozenSet[str], _Handle] = {}
        self._derived_lock = threading.Lock()
        self._use_answer = n.use_answer_api()
        self._check: Callable[[_Handle, bytes], _Check]
        if self._use_answer:
            _bind_fast(lib)
            self._fast = _fast_try
            self._check = self._check_with_answer
        else:
            self._fast = None
            self._check = self._check_with_json
        self._free = lib.tc_string_free

    @classmethod
    def from_env(cls, **overrides: Any) -> TokenChecker:
        """A checker configured from the environment, as the CLI is: ``TC_CLIENT_ID``,
        ``TC_CLIENT_SECRET``, ``TC_SCOPES`` (space-separated), ``TC_AUTH_URL``,
        ``TC_GROUPS_URL`` (an empty variable counts as unset). ``overrides`` are any
        constructor arguments and options (``client_id=…``, ``expected_scopes=…``,
        ``auth_url=…``, ``strict=True``, …) and win over the environment. Raises
        :class:`~tokenchecker.errors.InvalidConfigError` naming what is missing."""
        from ._env import merged

        config = merged(overrides)
        missing = [
            var
            for var, key in (("TC_CLIENT_ID", "client_id"), ("TC_CLIENT_SECRET", "client_secret"),
                             ("TC_SCOPES", "expected_scopes"))
            if config.get(key) is None
        ]
        if missing:
            raise e.InvalidConfigError(
                f"set {', '.join(missing)} in the environment (or pass "
                + ", ".join(k for v, k in (("TC_CLIENT_ID", "client_id"), ("TC_CLIENT_SECRET", "client_secret"),
                                          ("TC_SCOPES", "expected_scopes")) if v in missing)
                + "=...)"
            )
        client_id = config.pop("client_id")
        client_secret = config.pop("client_secret")
        scopes = config.pop("expected_scopes")
        return cls(client_id, client_secret, scopes, **config)

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

    def _handle(self) -> _Handle:
        h = self._h
        if h is None:
            raise e.CheckerClosedError("the checker is closed; create a new TokenChecker")
        return h

    def _derived_handle(self, scopes: FrozenSet[str]) -> _Handle:
        base = self._handle()
        if scopes == self.default_expected_scopes:
            return base
        key = scopes
        h = self._derived.get(key)
        if h is not None:
            return h
        with self._derived_lock:
            h = self._derived.get(key)
            if h is None:
                config = dict(self._base_config)
                config["expected_scopes"] = sorted(scopes)
                h = _new_checker(self._lib, config)
                if len(self._derived) >= 64:  # bounded: drop the oldest
                    self._derived.pop(next(iter(self._derived)))
                self._derived[key] = h
            return h

    # ---- checks (internal interface: -> (info, error, cache meta)) ---------------------------

    def _check_with_answer(self, h: _Handle, token: bytes) -> _Check:
        ans, meta, err, b_ans, b_meta, b_err = _scratch.t
        st = _fast_try(h.ptr, token, b_ans, b_meta, b_err)
        if st == n.TC_WOULD_BLOCK:
            if err.value:
                self._free(err)
                err.value = None
            return self._check_blocking(h, token)
        return self._answer_result(st, ans, meta, err)

    def _check_blocking(self, h: _Handle, token: bytes) -> _Check:
        green = _green_mode(self.cooperative)
        if green is not None:  # a greenlet: wait for tc_check_async without blocking the hub
            return _from_document(
                *_call_green(lambda cb, key: self._lib.tc_check_async(h.ptr, token, cb, key), green)
            )
        # Own out-parameters, not the thread's scratch: while this thread waits in the library,
        # a log callback on it may run Python code that checks another token.
        ans = c_void_p()
        meta = n.tc_answer_meta()
        err = c_void_p()
        st = self._lib.tc_check_answer(h.ptr, token, byref(ans), byref(meta), byref(err))
        return self._answer_result(st, ans, meta, err)

    def _answer_result(self, st: int, ans: c_void_p, meta: n.tc_answer_meta, err: c_void_p) -> _Check:
        if st == n.TC_OK:
            try:
                aid = _fast_id(ans)
                info = _MEMO.get(aid)
                if info is None:
                    info = _decode_answer(ans, aid)
            finally:
                _fast_free(ans)
                ans.value = None
            return info, None, (meta.source, meta.age_ms)
        text = n.take_string(self._lib, err.value)
        err.value = None
        return None, e.from_status(st, text), None

    def _check_with_json(self, h: _Handle, token: bytes) -> _Check:
        lib = self._lib
        out = c_void_p()
        st = lib.tc_try_check(h.ptr, token, byref(out))
        if st == n.TC_WOULD_BLOCK:
            n.take_string(lib, out.value)
            out.value = None
            green = _green_mode(self.cooperative)
            if green is not None:
                return _from_document(
                    *_call_green(lambda cb, key: lib.tc_check_async(h.ptr, token, cb, key), green)
                )
            st = lib.tc_check(h.ptr, token, byref(out))
        text = n.take_string(lib, out.value)
        return _from_document(st, text)

    # ---- the original API --------------------------------------------------------------------

    def check_token(
        self, access_token: str, expected_scopes: Optional[Union[str, Iterable[str]]] = None
    ) -> AuthState:
        """An :class:`AuthState` for the token. Like the original, nothing is checked until one
        of its properties is read (and a token problem then gives empty sets, not an error,
        unless ``strict``). ``expected_scopes`` replaces the checker's for this check."""
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
        state._resolve(strict=True)
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
            return state._settle((None, _nul_error("the token"), None), self.strict)
        h = state._handle
        if self._use_answer:
            b_ans, b_meta, b_err = _scratch.t[3:]
            st = _fast_try(h.ptr, token, b_ans, b_meta, b_err)
            if st != n.TC_WOULD_BLOCK:
                ans, meta, err = _scratch.t[:3]
                return state._settle(self._answer_result(st, ans, meta, err), self.strict)
            text = n.take_string(self._lib, _scratch.t[2].value)
            _scratch.t[2].value = None
        else:
            out = c_void_p()
            st = self._lib.tc_try_check(h.ptr, token, byref(out))
            text = n.take_string(self._lib, out.value)
        if st != n.TC_WOULD_BLOCK:
            return state._settle(_from_document(st, text), self.strict)
        st, text = await _call_async(
            lambda cb, key: self._lib.tc_check_async(h.ptr, token, cb, key)
        )
        return state._settle(_from_document(st, text), self.strict)

    def authorize(
        self,
        access_token: str,
        allowed_principals: Iterable[str],
        allow_public: bool = False,
        allow_all_authenticated_users: bool = False,
    ) -> AuthState:
        """Checks the token, then whether the caller is one of ``allowed_principals``
        (``tc_authorize``). Raises the typed error of any failure: ``NotAuthorizedError`` when
        no principal matched, ``AuthUnavailableError`` when only unavailable groups could
        decide. The state's ``matched_principal`` names the principal that matched."""
        h = self._handle()
        token = _token_bytes(access_token)
        request = _authorize_request(allowed_principals, allow_public, allow_all_authenticated_users)
        lib = self._lib
        out = c_void_p()
        st = lib.tc_try_authorize(h.ptr, token, request, byref(out))
        if st == n.TC_WOULD_BLOCK:
            n.take_string(lib, out.value)
            out.value = None
            green = _green_mode(self.cooperative)
            if green is not None:
                st, text = _call_green(
                    lambda cb, key: lib.tc_authorize_async(h.ptr, token, request, cb, key), green
                )
                state = AuthState(self, h, access_token, self.default_expected_scopes)
                return state._settle(_from_document(st, text), True)
            st = lib.tc_authorize(h.ptr, token, request, byref(out))
        state = AuthState(self, h, access_token, self.default_expected_scopes)
        return state._settle(_from_document(st, n.take_string(lib, out.value)), True)

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
        request = _authorize_request(allowed_principals, allow_public, allow_all_authenticated_users)
        lib = self._lib
        out = c_void_p()
        st = lib.tc_try_authorize(h.ptr, token, request, byref(out))
        text = n.take_string(lib, out.value)
        if st == n.TC_WOULD_BLOCK:
            st, text = await _call_async(
                lambda cb, key: lib.tc_authorize_async(h.ptr, token, request, cb, key)
            )
        state = AuthState(self, h, access_token, self.default_expected_scopes)
        return state._settle(_from_document(st, text), True)

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
        if st != n.TC_OK:
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
        if st != n.TC_OK:
            raise e.from_status(st, text)
        doc: Dict[str, Any] = json.loads(text)
        return doc

    def groups(self, access_token: str) -> FrozenSet[str]:
        """The caller's group principals (``urn:globus:groups:id:<id>``), fetched through the
        dependent token and the Groups API (cached). Raises the typed error of any failure:
        ``AuthUnavailableError`` when Groups is down, ``NotAuthorizedError`` when this service's
        scope lacks the Groups dependency, a token error when the token is refused."""
        return self._groups(self._handle(), _token_bytes(access_token))

    def _groups(self, h: _Handle, token: bytes) -> FrozenSet[str]:
        lib = self._lib
        green = _green_mode(self.cooperative)
        if green is not None and green != "select" and _groups_would_block(lib, h, token):
            # There is no tc_groups_async: the blocking call runs on the hub's pool of real
            # threads while this greenlet waits.
            st, text = _in_real_thread(green, _groups_call, lib, h.ptr, token)
        else:
            st, text = _groups_call(lib, h.ptr, token)
        if st != n.TC_OK:
            raise e.from_status(st, text)
        return frozenset([GROUP_PREFIX + g for g in json.loads(text)["groups"]])

    def purge(self, access_token: str) -> None:
        """Forgets everything cached for one token, in every cache layer."""
        st = self._lib.tc_purge(self._handle().ptr, _token_bytes(access_token))
        if st != n.TC_OK:
            raise e.from_status(st)

    def purge_identity(self, identity: str) -> None:
        """Forgets every cached token of an identity (an id or its identity principal)."""
        st = self._lib.tc_purge_identity(self._handle().ptr, _arg_bytes(identity, "the identity id"))
        if st != n.TC_OK:
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


def _authorize_request(
    allowed: Iterable[str], allow_public: bool, allow_all_authenticated_users: bool
) -> bytes:
    if isinstance(allowed, str):
        allowed = [allowed]
    return json.dumps(
        {
            "allowed_principals": [str(p) for p in allowed],
            "allow_public": bool(allow_public),
            "allow_all_authenticated_users": bool(allow_all_authenticated_users),
        }
    ).encode()


def _from_document(st: int, text: str) -> _Check:
    if st != n.TC_OK:
        return None, e.from_status(st, text), None
    doc = json.loads(text)
    cache = doc.get("cache") or {}
    return _Info(doc), None, (cache.get("source"), int(cache.get("age_ms") or 0))


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
        self.status = n.TC_PANIC
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


def _deliver(fut: asyncio.Future[Tuple[int, str]], status: int, text: str) -> None:
    if not fut.done():
        fut.set_result((status, text))


def _complete(entry: _Pending, status: int, text: str) -> None:
    if isinstance(entry, _Green):
        entry.status, entry.text = status, text
        try:
            _raw_write(entry.wfd, b"\x01")  # one byte into an empty pipe: never blocks
        except OSError:  # EPIPE: the waiter gave up (killed, timed out) and closed its end
            pass
        finally:
            _raw_close(entry.wfd)
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
    if st != n.TC_OK:  # not started: the callback will never come
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
        if st != n.TC_OK:  # not started: the callback will never come
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


# tc_try_authorize with a group no caller belongs to answers from memory exactly when the token
# and its groups (or a cached answer that decides) are in the in-process cache: then tc_groups
# does not wait either.
_GROUPS_PROBE = json.dumps(
    {"allowed_principals": [GROUP_PREFIX + "00000000-0000-0000-0000-000000000000"]}
).encode()


def _groups_would_block(lib: ctypes.CDLL, h: _Handle, token: bytes) -> bool:
    out = c_void_p()
    st = lib.tc_try_authorize(h.ptr, token, _GROUPS_PROBE, byref(out))
    n.take_string(lib, out.value)
    return bool(st == n.TC_WOULD_BLOCK)


def _groups_call(lib: ctypes.CDLL, ptr: c_void_p, token: bytes) -> Tuple[int, str]:
    out = c_void_p()
    st = lib.tc_groups(ptr, token, byref(out))
    return int(st), n.take_string(lib, out.value)


def _in_real_thread(mode: str, fn: Callable[..., Tuple[int, str]], *args: Any) -> Tuple[int, str]:
    """Runs a blocking call on the hub's pool of OS threads; the greenlet waits cooperatively."""
    if mode == "gevent":
        result: Tuple[int, str] = import_module("gevent").get_hub().threadpool.apply(fn, args)
    else:
        result = import_module("eventlet.tpool").execute(fn, *args)
    return result


# ---- fork ----------------------------------------------------------------------------------------


def _after_fork_in_child() -> None:
    # The child has only the thread that forked. The library gives it a new runtime: calls in
    # flight in the parent never call back here, so whoever waits for one in the child (a
    # greenlet or a loop of the forking thread) gets an error now instead of waiting forever.
    # The answer memo is emptied too: the child's answers are its own.
    _MEMO.clear()
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
                _complete(entry, n.TC_AUTH_UNAVAILABLE, text)
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
        waiter.status, waiter.text = n.TC_AUTH_UNAVAILABLE, text
        _raw_write(w, b"\x01")
    finally:
        _raw_close(r)
        _raw_close(w)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ---- AuthState -----------------------------------------------------------------------------------


class AuthState:
    """What a check of one token found (the original ``AuthState``).

    ``identities``, ``principals`` and ``groups`` are frozensets of principal URNs;
    ``effective_identity`` the caller's identity principal. In the default mode a token that
    fails a rule gives empty sets and ``None`` (as the original), with the typed error in
    ``errors``; with ``strict`` the error is raised. Unavailable services always raise.
    """

    __slots__ = (
        "_checker",
        "_handle",
        "bearer_token",
        "expected_scopes",
        "errors",
        "_info",
        "_error",
        "_meta",
        "_groups",
    )

    def __init__(
        self, checker: TokenChecker, handle: _Handle, bearer_token: str, expected_scopes: FrozenSet[str]
    ) -> None:
        self._checker = checker
        self._handle = handle
        self.bearer_token = bearer_token
        self.expected_scopes = expected_scopes
        self.errors: List[Exception] = []
        self._info: Optional[_Info] = None
        self._error: Optional[e.TokenCheckerError] = None
        self._meta: Any = None
        self._groups: Optional[FrozenSet[str]] = None

    # ---- resolution ------------------------------------------------------------------------------

    def _settle(self, result: _Check, strict: bool) -> AuthState:
        info, err, meta = result
        if err is not None:
            if not isinstance(err, _ALWAYS_RAISE):
                self._error = err
                self.errors.append(err)
            if strict or isinstance(err, _ALWAYS_RAISE):
                raise err
            return self
        self._info = info
        self._meta = meta
        if info is not None and info.groups is not None and info.groups_status == "available":
            self._groups = info.groups
        return self

    def _resolve(self, strict: bool = False) -> Optional[_Info]:
        info = self._info
        if info is not None:
            return info
        checker = self._checker
        if self._error is not None:  # already failed: never re-checked by this state
            if strict or checker.strict:
                raise self._error
            return None
        token = self.bearer_token
        tb = token.encode() if token.__class__ is str and token.isascii() else _encode_token(token)
        if 0 in tb:  # a NUL byte, where a C string would end: refused as an empty token is
            self._settle((None, _nul_error("the token"), None), strict or checker.strict)
            return None
        fast = checker._fast
        if fast is not None:
            # The hot path, inline: a cached answer, decoded once per answer id.
            ans, meta, err, b_ans, b_meta, b_err = _scratch.t
            st = fast(self._handle.ptr, tb, b_ans, b_meta, b_err)
            if st == 0:
                aid = _fast_id(ans)
                info = _MEMO.get(aid)
                if info is None:
                    try:
                        info = _decode_answer(ans, aid)
                    finally:
                        _fast_free(ans)
                else:
                    _fast_free(ans)
                self._info = info
                self._meta = (meta.source, meta.age_ms)
                return info
            if err.value:
                if st == n.TC_WOULD_BLOCK:
                    checker._free(err)
                    err.value = None
                else:  # a cached negative answer: its error document is here already
                    self._settle(checker._answer_result(st, ans, meta, err), strict or checker.strict)
                    return self._info
            # a miss: ask the network (the GIL is released meanwhile)
            self._settle(checker._check_blocking(self._handle, tb), strict or checker.strict)
            return self._info
        self._settle(checker._check(self._handle, tb), strict or checker.strict)
        return self._info

    def introspect_token(self) -> Optional[Dict[str, Any]]:
        """The introspection answer as the original returned it (``active``, ``scope`` as a
        space-separated string, ``sub``, ``username``, ``name``, ``email``, ``client_id``,
        ``aud``, ``exp``, ``nbf``, ``iat``, ``identity_set``), or ``None`` when a rule failed."""
        info = self._info or self._resolve()
        if info is None:
            return None
        d = info.data
        out = {
            "active": True,
            "scope": " ".join(d.get("scopes") or ()),
            "client_id": d.get("client_id"),
            "username": d.get("username"),
            "name": d.get("name"),
            "email": d.get("email"),
            "sub": d.get("sub"),
            "aud": list(d.get("aud") or ()),
            "exp": d.get("exp"),
            "nbf": d.get("nbf"),
            "iat": d.get("iat"),
            "identity_set": list(d.get("identities") or ()),
        }
        return out

    @property
    def identities(self) -> FrozenSet[str]:
        info = self._info or self._resolve()
        return info.identities if info is not None else _EMPTY

    @property
    def effective_identity(self) -> Optional[str]:
        info = self._info or self._resolve()
        return info.effective_identity if info is not None else None

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
        try:
            groups = self._checker._groups(self._handle, _token_bytes(self.bearer_token))
        except e.TokenCheckerError as err:
            if self._checker.strict or isinstance(err, (e.PanicError, e.CheckerClosedError)):
                raise
            self.errors.append(err)
            return _EMPTY
        self._groups = groups
        return groups

    @property
    def principals(self) -> FrozenSet[str]:
        """Identities and groups (reading it fetches the groups, as the original did)."""
        return self.identities.union(self.groups)

    def check_authorization(
        self,
        allowed_principals: Iterable[str],
        allow_public: bool = False,
        allow_all_authenticated_users: bool = False,
    ) -> bool:
        """The original semantics: ``public`` counts only with ``allow_public``,
        ``all_authenticated_users`` only with ``allow_all_authenticated_users`` and an identity;
        otherwise an identity or group principal must match. Groups are fetched only when the
        list names a group and nothing cheaper matched."""
        allowed = frozenset([allowed_principals] if isinstance(allowed_principals, str) else allowed_principals)
        if allow_public and "public" in allowed:
            return True
        identities = self.identities
        if not allowed.isdisjoint(identities):
            return True
        if allow_all_authenticated_users and "all_authenticated_users" in allowed and identities:
            return True
        if identities and any(p.startswith(GROUP_PREFIX) for p in allowed):
            return not allowed.isdisjoint(self.groups)
        return False

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
        return self._checker.expected_audience

    # ---- beyond the original ---------------------------------------------------------------------

    @property
    def valid(self) -> bool:
        """Whether the token passed every rule (checks it if not done yet)."""
        return (self._info or self._resolve()) is not None

    @property
    def error(self) -> Optional[e.TokenCheckerError]:
        """The typed error of a failed check (``None`` when valid or not checked yet)."""
        return self._error

    def raise_for_error(self) -> AuthState:
        """Raises the check's typed error, if any; returns the state otherwise."""
        self._resolve(strict=True)
        return self

    def _field(self, key: str) -> Any:
        info = self._info or self._resolve()
        return info.data.get(key) if info is not None else None

    @property
    def username(self) -> Optional[str]:
        v = self._field("username")
        return v if isinstance(v, str) else None

    @property
    def name(self) -> Optional[str]:
        v = self._field("name")
        return v if isinstance(v, str) else None

    @property
    def email(self) -> Optional[str]:
        v = self._field("email")
        return v if isinstance(v, str) else None

    @property
    def client_id(self) -> Optional[str]:
        v = self._field("client_id")
        return v if isinstance(v, str) else None

    @property
    def identity_ids(self) -> Tuple[str, ...]:
        """The bare identity ids, in the server's order."""
        return tuple(self._field("identities") or ())

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
        return tuple(self._field("aud") or ())

    @property
    def expires_at(self) -> Optional[int]:
        """The token's ``exp`` (Unix seconds)."""
        v = self._field("exp")
        return int(v) if isinstance(v, (int, float)) else None

    @property
    def matched_principal(self) -> Optional[str]:
        """After :meth:`TokenChecker.authorize`: the principal that matched."""
        authz = self._field("authorization")
        return authz.get("matched") if isinstance(authz, dict) else None

    @property
    def cache_source(self) -> Optional[str]:
        """Where the answer came from: ``network``, ``coalesced``, ``memory``, ``near``,
        ``redis``, ``memcached`` or ``stale`` (``None`` before/without a successful check)."""
        if self._info is None:
            self._resolve()
        meta = self._meta
        if meta is None:
            return None
        source = meta[0]
        return source if isinstance(source, str) or source is None else _source_name(source)

    @property
    def cache_age_ms(self) -> Optional[int]:
        if self._info is None:
            self._resolve()
        meta = self._meta
        return int(meta[1]) if meta is not None else None

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
        try:
            doc = state._checker.dependent_token(state.bearer_token, key)
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
    waits, requests and errors per endpoint, backend counters, the cache, … plus
    ``"python": {"answer_memo_entries": n}``."""
    lib = n.load()
    out = c_void_p()
    st = lib.tc_stats(byref(out))
    text = n.take_string(lib, out.value)
    if st != n.TC_OK:
        raise e.from_status(st, text)
    doc: Dict[str, Any] = json.loads(text)
    doc["python"] = {"answer_memo_entries": len(_MEMO), "answer_memo_max": _MEMO_MAX}
    return doc


def metrics() -> str:
    """The same counters and latency histograms in the Prometheus text format (``tc_metrics``)."""
    lib = n.load()
    out = c_void_p()
    st = lib.tc_metrics(byref(out))
    text = n.take_string(lib, out.value)
    if st != n.TC_OK:
        raise e.from_status(st, text)
    return text
