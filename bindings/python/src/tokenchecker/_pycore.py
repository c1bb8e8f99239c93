"""The hot paths over ctypes alone: the interface of the compiled extension (``_speedups.pyi``)
for when it is absent or ``TOKENCHECKER_PY_PURE=1`` turns it off. Same answers, slower.

The memo (the header's rule, beside ``tc_answer_id``): one per process, :class:`Info` by answer
id, bounded by bytes (``TOKENCHECKER_MEMO_BYTES``, read once by ``_native.memo_bytes()``;
default 16 MiB, 0 = off). An entry counts the length of the answer's text (``tc_answer_text``: the answer's
strings, which the Info keeps alive with the answer) and of the principals it built, plus a fixed
:data:`MEMO_ENTRY_OVERHEAD` bytes (the Info, its ``c_void_p``, frozenset and ``str`` headers, the
memo's ordered-dict node: Python objects, larger than the extension's C ones).
Oldest first out; a full memo admits one new entry in :data:`MEMO_ADMIT_WHEN_FULL`. An Info holds
a reference to its answer (for ``introspection()``).
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections import OrderedDict
from ctypes import byref, c_size_t, c_void_p
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional, Tuple

from . import _native as n

ABI_VERSION = n.ABI_VERSION
#: Fixed bytes counted per memo entry besides the strings' lengths (see above).
MEMO_ENTRY_OVERHEAD = 768
#: A full memo admits one new entry in this many (as the extension's): a working set larger than
#: the memo mostly passes by it instead of evicting an entry on every check for nothing.
MEMO_ADMIT_WHEN_FULL = 8
IDENTITY_PREFIX = "urn:globus:auth:identity:"

Result = Tuple[int, Optional["Info"], Optional[str], int, Optional[str]]

_EMPTY: FrozenSet[str] = frozenset()
_lib: Any = None
_factory: Callable[[int, str], Exception] = lambda st, doc: RuntimeError(f"{st}: {doc}")  # noqa: E731
_OK = 0
_WOULD_BLOCK = -1
_NOT_AUTHORIZED = -1
# the hot functions bound a second time without argtypes (ctypes converts already C-typed
# arguments much faster that way)
_fast_try: Any = None
_fast_id: Any = None
_fast_free: Any = None
_fast_fields: Any = None
_fast_authz: Any = None


_library: Any = None


def set_library(lib: ctypes.CDLL) -> None:
    """The ctypes handle to call (before :func:`bind`)."""
    global _library
    _library = lib


def bind(symbols: Dict[str, int], memo_max_bytes: int, error_factory: Callable[[int, str], Exception]) -> None:
    global _lib, _factory, _OK, _WOULD_BLOCK, _NOT_AUTHORIZED, _fast_try, _fast_id, _fast_free, _fast_fields
    global _fast_authz
    global _memo_max
    lib = _library
    if lib is None:
        raise RuntimeError("tokenchecker._pycore: set_library() was not called")
    del symbols  # the extension's way in (function addresses); here the ctypes handle itself
    _OK, _WOULD_BLOCK = n.STATUS["TC_OK"], n.STATUS["TC_WOULD_BLOCK"]
    _NOT_AUTHORIZED = n.STATUS["TC_NOT_AUTHORIZED"]
    f_try = lib["tc_try_check_answer"]
    f_try.restype = ctypes.c_uint32
    f_id = lib["tc_answer_id"]
    f_id.restype = ctypes.c_uint64
    f_free = lib["tc_answer_free"]
    f_free.restype = None
    f_fields = lib["tc_answer_fields"]
    f_fields.restype = ctypes.POINTER(n.tc_fields)
    f_authz = lib["tc_try_authorize_answer"]
    f_authz.restype = ctypes.c_uint32
    _fast_try, _fast_id, _fast_free, _fast_fields, _fast_authz = f_try, f_id, f_free, f_fields, f_authz
    if memo_max_bytes != _memo_max:
        memo_clear()
    _memo_max = memo_max_bytes
    _factory = error_factory
    _lib = lib


def _take(ptr: Optional[int]) -> str:
    if not ptr:
        return ""
    try:
        return ctypes.string_at(ptr).decode("utf-8", "replace")
    finally:
        _lib.tc_string_free(ptr)


class Handle:
    """Owns one ``tc_checker*`` (``tc_free`` when the last reference goes)."""

    __slots__ = ("ptr", "_cptr")

    def __init__(self, address: int) -> None:
        self.ptr = address
        self._cptr = c_void_p(address)

    def __del__(self) -> None:
        ptr, self.ptr = self.ptr, 0
        if ptr and _lib is not None:
            try:
                _lib.tc_free(ptr)
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass


def _str(s: Any) -> Optional[str]:
    if not s.ptr:
        return None
    return ctypes.string_at(s.ptr, s.len).decode("utf-8", "replace")


def _strs(lst: Any) -> Tuple[str, ...]:
    items = lst.items
    return tuple(
        ctypes.string_at(items[i].ptr, items[i].len).decode("utf-8", "replace") if items[i].ptr else ""
        for i in range(lst.len)
    )


class Info:
    """What a check found, built from ``tc_answer_fields``; keeps the answer. The identity
    principals and the effective identity are built at once, the other fields read from the
    answer when asked for (as the extension's)."""

    __slots__ = ("_answer", "id", "nbytes", "identities", "effective_identity")

    def __init__(self, answer: c_void_p) -> None:
        """Takes over the reference to ``answer``."""
        self._answer = c_void_p(answer.value)
        self.id: int = _fast_id(self._answer)
        f = _fast_fields(self._answer).contents
        sub = _str(f.sub)
        principals = [IDENTITY_PREFIX + i for i in _strs(f.identities)]
        effective: Optional[str] = None
        if sub is not None:
            effective = IDENTITY_PREFIX + sub
            for p in principals:
                if p == effective:
                    effective = p  # the same str
                    break
        self.identities: FrozenSet[str] = frozenset(principals)
        self.effective_identity = effective
        length = c_size_t()
        _lib.tc_answer_text(self._answer, byref(length))
        self.nbytes: int = (
            MEMO_ENTRY_OVERHEAD
            + length.value
            + sum(len(p) for p in principals)
            + (len(effective) if effective is not None and effective not in self.identities else 0)
        )

    def _fields(self) -> Any:
        return _fast_fields(self._answer).contents

    @property
    def active(self) -> bool:
        return bool(self._fields().active)

    @property
    def has_identity_set(self) -> bool:
        return bool(self._fields().has_identity_set)

    @property
    def sub(self) -> Optional[str]:
        return _str(self._fields().sub)

    @property
    def username(self) -> Optional[str]:
        return _str(self._fields().username)

    @property
    def name(self) -> Optional[str]:
        return _str(self._fields().name)

    @property
    def email(self) -> Optional[str]:
        return _str(self._fields().email)

    @property
    def client_id(self) -> Optional[str]:
        return _str(self._fields().client_id)

    @property
    def exp(self) -> Optional[int]:
        f = self._fields()
        return int(f.exp) if f.has_exp else None

    @property
    def nbf(self) -> Optional[int]:
        f = self._fields()
        return int(f.nbf) if f.has_nbf else None

    @property
    def iat(self) -> Optional[int]:
        f = self._fields()
        return int(f.iat) if f.has_iat else None

    @property
    def identity_ids(self) -> Tuple[str, ...]:
        return _strs(self._fields().identities)

    @property
    def scope_list(self) -> Tuple[str, ...]:
        return _strs(self._fields().scopes)

    @property
    def aud(self) -> Tuple[str, ...]:
        return _strs(self._fields().aud)

    @property
    def scopes(self) -> FrozenSet[str]:
        return frozenset(self.scope_list)

    def introspection(self) -> str:
        out = c_void_p()
        st = _lib.tc_answer_introspection(self._answer, byref(out))
        text = _take(out.value)
        if st != _OK:
            raise _factory(st, text)
        return text

    def __del__(self) -> None:
        ans, self._answer = self._answer, c_void_p()
        if ans.value and _fast_free is not None:
            try:
                _fast_free(ans)
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass

    def __repr__(self) -> str:
        return f"<tokenchecker Info of answer {self.id}>"


# ---- the memo -------------------------------------------------------------------------------------

_memo: OrderedDict[int, Info] = OrderedDict()
_memo_max = 0
_memo_bytes = 0
_memo_lock = threading.Lock()  # ctypes calls release the GIL: entries are added from many threads
_counters = {"hits": 0, "misses": 0, "evictions": 0, "refused": 0}


def _info_for(ans: c_void_p) -> Info:
    """The Info of an answer; takes over the reference to ``ans`` (and clears it)."""
    global _memo_bytes
    aid = _fast_id(ans)
    info = _memo.get(aid)
    if info is not None:
        _counters["hits"] += 1
        _fast_free(ans)
        ans.value = None
        return info
    _counters["misses"] += 1
    info = Info(ans)
    ans.value = None
    size = info.nbytes
    if _memo_bytes + size > _memo_max:  # full: admits one in MEMO_ADMIT_WHEN_FULL (see above)
        _counters["refused"] += 1
        if _counters["refused"] % MEMO_ADMIT_WHEN_FULL:
            return info
    if 0 < size <= _memo_max:
        gone: List[Info] = []  # released outside the lock (their __del__ calls the library)
        with _memo_lock:
            while _memo_bytes + size > _memo_max and _memo:
                old = _memo.popitem(last=False)[1]
                _memo_bytes -= old.nbytes
                _counters["evictions"] += 1
                gone.append(old)
            if aid not in _memo:
                _memo[aid] = info
                _memo_bytes += size
        del gone
    return info


def set_policy_factory(factory: Callable[[Any, bool, bool], Policy]) -> None:
    """The extension's way to compile a request in check_authorization; here the Python
    method does it itself."""
    del factory


def memo_clear() -> None:
    global _memo_bytes
    with _memo_lock:
        _memo.clear()
        _memo_bytes = 0


def _after_fork_in_child() -> None:
    # another thread may have held the lock at the fork: the child's is a new one (and the
    # child's answers are its own: the memo starts empty)
    global _memo_lock, _memo_bytes
    _memo_lock = threading.Lock()
    _memo.clear()
    _memo_bytes = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def memo_stats() -> Dict[str, int]:
    return {
        "entries": len(_memo),
        "bytes": _memo_bytes,
        "max_bytes": _memo_max,
        "entry_overhead": MEMO_ENTRY_OVERHEAD,
        "hits": _counters["hits"],
        "misses": _counters["misses"],
        "evictions": _counters["evictions"],
    }


_sources: Dict[int, str] = {}


def _source(addr: Optional[int]) -> Optional[str]:
    if not addr:
        return None
    name = _sources.get(addr)
    if name is None:
        name = ctypes.string_at(addr).decode("ascii", "replace")
        _sources[addr] = name
    return name


# ---- policies -------------------------------------------------------------------------------------


class Policy:
    """A compiled authorization request (``tc_policy_new``)."""

    __slots__ = ("_p", "principals", "request")

    def __init__(self, request: bytes) -> None:
        p = c_void_p()
        err = c_void_p()
        self._p = p
        st = _lib.tc_policy_new(request, byref(p), byref(err))
        text = _take(err.value)
        if st != _OK:
            raise _factory(st, text)
        length = c_size_t()
        out: List[str] = []
        for i in range(_lib.tc_policy_len(p)):
            ptr = _lib.tc_policy_principal(p, i, byref(length))
            out.append(ctypes.string_at(ptr, length.value).decode("utf-8", "replace") if ptr else "")
        self.principals: Tuple[str, ...] = tuple(out)
        self.request = request

    def __del__(self) -> None:
        p, self._p = self._p, c_void_p()
        if p.value and _lib is not None:
            try:
                _lib.tc_policy_free(p)
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass


# ---- calls ---------------------------------------------------------------------------------------


class _Scratch(threading.local):
    """Each thread's out-parameters for the non-blocking calls (never shared between threads)."""

    def __init__(self) -> None:
        ans = c_void_p()
        meta = n.tc_answer_meta()
        err = c_void_p()
        matched = c_size_t()
        self.t = (ans, meta, err, byref(ans), byref(meta), byref(err))
        self.matched = (matched, byref(matched))


class _Pending:
    """An authorization's answer whose Info is not built yet (one reference)."""

    __slots__ = ("answer",)

    def __init__(self, answer: c_void_p) -> None:
        self.answer = c_void_p(answer.value)

    def take(self) -> c_void_p:
        ans, self.answer = self.answer, c_void_p()
        return ans

    def __del__(self) -> None:
        ans, self.answer = self.answer, c_void_p()
        if ans.value and _fast_free is not None:
            try:
                _fast_free(ans)
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass


_scratch = _Scratch()


def check(handle: Handle, token: bytes, block: bool) -> Result:
    if block:
        # own out-parameters: while this thread waits in the library, a log callback on it may
        # run Python code that checks another token
        ans, meta, err = c_void_p(), n.tc_answer_meta(), c_void_p()
        st = _lib.tc_check_answer(handle.ptr, token, byref(ans), byref(meta), byref(err))
    else:
        ans, meta, err, b_ans, b_meta, b_err = _scratch.t
        st = _fast_try(handle._cptr, token, b_ans, b_meta, b_err)
    if st == _OK:
        _take(err.value)
        err.value = None
        return st, _info_for(ans), _source(meta.source), int(meta.age_ms), None
    text = _take(err.value)
    err.value = None
    return st, None, None, 0, text


def authorize(handle: Handle, token: bytes, policy: Policy, block: bool) -> Result:
    ans, meta, err, matched = c_void_p(), n.tc_answer_meta(), c_void_p(), c_size_t()
    call = _lib.tc_authorize_answer if block else _lib.tc_try_authorize_answer
    st = call(handle.ptr, token, policy._p, byref(ans), byref(meta), byref(matched), byref(err))
    if st == _OK:
        _take(err.value)
        info = _info_for(ans)
        m = policy.principals[matched.value] if matched.value < len(policy.principals) else None
        return st, info, _source(meta.source), int(meta.age_ms), m
    return st, None, None, 0, _take(err.value)


# ---- State: the core of AuthState -----------------------------------------------------------------


class State:
    """The core of AuthState (the extension's ``State``, in Python): a cached check through the
    non-blocking call and the memo; anything else goes to the subclass's slow paths."""

    __slots__ = (
        "_checker",
        "_handle",
        "bearer_token",
        "expected_scopes",
        "errors",
        "_info",
        "_error",
        "_groups",
        "_matched",
        "_source",
        "_age_ms",
        "_pending",
    )

    def __init__(self, checker: Any, handle: Handle, bearer_token: Any, expected_scopes: FrozenSet[str]) -> None:
        self._checker = checker
        self._handle = handle
        self.bearer_token = bearer_token
        self.expected_scopes = expected_scopes
        self.errors: List[Exception] = []
        self._info: Optional[Info] = None
        self._error: Any = None
        self._groups: Optional[FrozenSet[str]] = None
        self._matched: Optional[str] = None
        self._source: Optional[str] = None
        self._age_ms = 0
        self._pending: Optional[_Pending] = None

    # the subclass's slow paths
    def _resolve_slow(self, strict: bool = False) -> Optional[Info]:
        raise NotImplementedError

    def _miss(self, token: bytes, strict: bool) -> Optional[Info]:
        raise NotImplementedError

    def _fail(self, status: int, document: str, strict: bool) -> Optional[Info]:
        raise NotImplementedError

    def _authorize_slow(
        self, policy: Policy, raising: bool, token: Optional[bytes], status: Optional[int], document: Optional[str]
    ) -> bool:
        raise NotImplementedError

    def _resolve(self, strict: bool = False) -> Optional[Info]:
        info = self._info
        if info is not None:
            return info
        pending = self._pending
        if pending is not None:  # what an authorization found
            self._pending = None
            info = self._info = _info_for(pending.take())
            return info
        token = self.bearer_token
        if self._error is None and token.__class__ is str and token.isascii():
            tb = token.encode()
            if 0 not in tb:  # the NUL byte (an int: ~20 ns where a bytes needle costs ~170)
                ans, meta, err, b_ans, b_meta, b_err = _scratch.t
                st = _fast_try(self._handle._cptr, tb, b_ans, b_meta, b_err)
                if st == _OK:
                    if err.value:
                        _take(err.value)
                        err.value = None
                    info = _info_for(ans)
                    self._info = info
                    self._source = _source(meta.source)
                    self._age_ms = meta.age_ms
                    return info
                text = _take(err.value)
                err.value = None
                if st == _WOULD_BLOCK:
                    return self._miss(tb, strict)
                return self._fail(st, text, strict)
        return self._resolve_slow(strict)

    @property
    def identities(self) -> FrozenSet[str]:
        info = self._info or self._resolve()
        return info.identities if info is not None else _EMPTY

    @property
    def effective_identity(self) -> Optional[str]:
        info = self._info or self._resolve()
        return info.effective_identity if info is not None else None

    def _authorize(self, policy: Policy, raising: bool) -> bool:
        token = self.bearer_token
        if self._error is None and token.__class__ is str and token.isascii():
            tb = token.encode()
            if 0 not in tb:
                ans, meta, err, b_ans, b_meta, b_err = _scratch.t
                matched, b_matched = _scratch.matched
                st = _fast_authz(self._handle._cptr, tb, policy._p, b_ans, b_meta, b_matched, b_err)
                if st == _OK:
                    if err.value:
                        _take(err.value)
                        err.value = None
                    if self._info is None:  # the Info is built only if something reads it
                        self._pending = _Pending(ans)
                    else:
                        _fast_free(ans)
                    ans.value = None
                    self._source = _source(meta.source)
                    self._age_ms = meta.age_ms
                    principals = policy.principals
                    self._matched = principals[matched.value] if matched.value < len(principals) else None
                    return True
                text = _take(err.value)
                err.value = None
                if st == _NOT_AUTHORIZED and not raising:
                    return False
                return self._authorize_slow(policy, raising, tb, st, text)
        return self._authorize_slow(policy, raising, None, None, None)

    def _check_authorization_slow(
        self, allowed_principals: Iterable[str], allow_public: bool = False, allow_all_authenticated_users: bool = False
    ) -> bool:
        raise NotImplementedError

    def check_authorization(
        self, allowed_principals: Iterable[str], allow_public: bool = False, allow_all_authenticated_users: bool = False
    ) -> bool:
        """The original semantics (see ``AuthState``)."""
        return self._check_authorization_slow(allowed_principals, allow_public, allow_all_authenticated_users)


__all__ = [
    "ABI_VERSION",
    "MEMO_ENTRY_OVERHEAD",
    "Handle",
    "Info",
    "Policy",
    "State",
    "authorize",
    "bind",
    "check",
    "memo_clear",
    "memo_stats",
    "set_policy_factory",
]
