"""Loading libtokenchecker and declaring its C ABI (include/tokenchecker.h) for ctypes.

The library is loaded here, once, with ctypes; the compiled extension ``tokenchecker._speedups``
(when present and not turned off with ``TOKENCHECKER_PY_PURE=1``) calls the same copy through
the function addresses of this handle (:func:`addresses`). Every function called through ctypes
goes through a plain ``ctypes.CDLL``, which releases the GIL for the whole call: a check blocked
on the network never stops other Python threads.

The facts (status numbers, cache sources, configuration keys) come from the library itself
(``tc_library_info``): :data:`STATUS`, :func:`library_info`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import sys
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from typing import Any, Callable, Dict, List, Optional, Tuple

#: The ABI generation this binding was written for (``TOKENCHECKER_ABI_VERSION`` of the header).
ABI_VERSION = 2

#: Environment variable naming a directory that holds the library; it wins over the bundled copy.
LIB_DIR_ENV = "TOKENCHECKER_LIB_DIR"
#: ``=1``: run on ctypes alone, without the compiled extension ``tokenchecker._speedups``.
PURE_ENV = "TOKENCHECKER_PY_PURE"
#: The answer memo's bound in bytes (the header's memo rule); 0 turns the memo off.
MEMO_BYTES_ENV = "TOKENCHECKER_MEMO_BYTES"
DEFAULT_MEMO_BYTES = 16 * 1024 * 1024

#: Status name -> number, from the library itself (``tc_library_info``), filled by :func:`load`.
STATUS: Dict[str, int] = {}

#: Log level name -> tc_log_level, from the library itself (``tc_library_info``; "warning" is
#: Python's name for "warn"), filled by :func:`load`.
LOG_LEVELS: Dict[str, int] = {}


class LibraryNotFoundError(ImportError):
    """libtokenchecker could not be loaded; the message names every place that was tried."""


class tc_answer_meta(Structure):
    """``tc_answer_meta``: where a cached answer came from and how old it is."""

    # ``source`` is a static C string: kept as an address, decoded once per distinct address.
    _fields_ = [("source", c_void_p), ("age_ms", c_uint64)]


class tc_str(Structure):
    """``tc_str``: borrowed UTF-8, not NUL-terminated (``ptr`` NULL for an absent value)."""

    _fields_ = [("ptr", c_void_p), ("len", c_size_t)]


class tc_str_list(Structure):
    _fields_ = [("items", POINTER(tc_str)), ("len", c_size_t)]


class tc_fields(Structure):
    """``tc_fields``: an answer's fields (``tc_answer_fields``), borrowed from the answer."""

    _fields_ = [
        ("active", c_bool),
        ("has_identity_set", c_bool),
        ("has_exp", c_bool),
        ("has_nbf", c_bool),
        ("has_iat", c_bool),
        ("exp", c_int64),
        ("nbf", c_int64),
        ("iat", c_int64),
        ("sub", tc_str),
        ("username", tc_str),
        ("name", tc_str),
        ("email", tc_str),
        ("client_id", tc_str),
        ("identities", tc_str_list),
        ("scopes", tc_str_list),
        ("aud", tc_str_list),
    ]


#: ``tc_callback``: (user_data, status, json). ``json`` stays an address so that it can be freed.
CALLBACK = CFUNCTYPE(None, c_void_p, c_uint32, c_void_p)
#: ``tc_log_callback``: (user_data, level, message).
LOG_CALLBACK = CFUNCTYPE(None, c_void_p, c_uint32, c_char_p)


def _library_names() -> List[str]:
    if sys.platform == "darwin":
        return ["libtokenchecker.dylib", "libtokenchecker.0.dylib"]
    if sys.platform == "win32":
        return ["tokenchecker.dll"]
    return ["libtokenchecker.so", "libtokenchecker.so.0"]


def _candidates() -> Tuple[List[str], bool]:
    """Paths to try in order, and whether they came from ``TOKENCHECKER_LIB_DIR`` only."""
    names = _library_names()
    env = os.environ.get(LIB_DIR_ENV)
    if env:
        # An explicit directory is a promise: no silent fallback to another copy.
        return [os.path.join(env, n) for n in names], True
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_lib")
    paths = [os.path.join(here, n) for n in names]
    found = ctypes.util.find_library("tokenchecker")
    if found:
        paths.append(found)
    paths.extend(names)  # bare names: the dynamic loader's own search (LD_LIBRARY_PATH, ld.so.cache)
    return paths, False


_DECLARED: List[str] = []


def _declare(lib: ctypes.CDLL) -> None:
    vp, st = c_void_p, c_uint32
    pvp = POINTER(c_void_p)
    sigs: List[Tuple[str, Any, List[Any]]] = [
        ("tc_new", st, [c_char_p, pvp, pvp]),
        ("tc_free", None, [vp]),
        ("tc_check", st, [vp, c_char_p, pvp]),
        ("tc_try_check", st, [vp, c_char_p, pvp]),
        ("tc_check_async", st, [vp, c_char_p, CALLBACK, vp]),
        ("tc_authorize", st, [vp, c_char_p, c_char_p, pvp]),
        ("tc_try_authorize", st, [vp, c_char_p, c_char_p, pvp]),
        ("tc_authorize_async", st, [vp, c_char_p, c_char_p, CALLBACK, vp]),
        ("tc_dependent_token", st, [vp, c_char_p, c_char_p, pvp]),
        ("tc_dependent_token_async", st, [vp, c_char_p, c_char_p, CALLBACK, vp]),
        ("tc_purge", st, [vp, c_char_p]),
        ("tc_purge_identity", st, [vp, c_char_p]),
        ("tc_stats", st, [pvp]),
        ("tc_metrics", st, [pvp]),
        ("tc_set_logger", st, [LOG_CALLBACK, vp, c_uint32]),
        ("tc_string_free", None, [vp]),
        ("tc_version", c_char_p, []),
        ("tc_abi_version", c_uint32, []),
        ("tc_status_name", c_char_p, [c_uint32]),
        # ABI generation 2: answer handles, compiled policies, derived checkers, the facts.
        ("tc_check_answer", st, [vp, c_char_p, pvp, POINTER(tc_answer_meta), pvp]),
        ("tc_try_check_answer", st, [vp, c_char_p, pvp, POINTER(tc_answer_meta), pvp]),
        ("tc_answer_fields", POINTER(tc_fields), [vp]),
        ("tc_answer_text", vp, [vp, POINTER(c_size_t)]),
        ("tc_answer_introspection", st, [vp, pvp]),
        ("tc_answer_id", c_uint64, [vp]),
        ("tc_answer_retain", vp, [vp]),
        ("tc_answer_free", None, [vp]),
        ("tc_groups", st, [vp, c_char_p, pvp]),
        ("tc_policy_new", st, [c_char_p, pvp, pvp]),
        ("tc_policy_free", None, [vp]),
        ("tc_policy_len", c_size_t, [vp]),
        ("tc_policy_principal", vp, [vp, c_size_t, POINTER(c_size_t)]),
        ("tc_authorize_answer", st, [vp, c_char_p, vp, pvp, POINTER(tc_answer_meta), POINTER(c_size_t), pvp]),
        ("tc_try_authorize_answer", st, [vp, c_char_p, vp, pvp, POINTER(tc_answer_meta), POINTER(c_size_t), pvp]),
        ("tc_derive", st, [vp, c_char_p, pvp, pvp]),
        ("tc_checker_info", st, [vp, pvp]),
        ("tc_library_info", st, [pvp]),
    ]
    for name, restype, argtypes in sigs:
        if name not in _DECLARED:
            _DECLARED.append(name)
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_path: Optional[str] = None
_info: Dict[str, Any] = {}


def _library_info(lib: ctypes.CDLL) -> Dict[str, Any]:
    out = c_void_p()
    st = lib.tc_library_info(ctypes.byref(out))
    text = take_string(lib, out.value)
    if st != 0:
        raise LibraryNotFoundError(f"tc_library_info failed ({st}): {text}")
    doc: Dict[str, Any] = json.loads(text)
    return doc


def load() -> ctypes.CDLL:
    """The library, loaded once (thread-safe); raises :class:`LibraryNotFoundError`."""
    global _lib, _path, _info
    lib = _lib
    if lib is not None:
        return lib
    with _lock:
        if _lib is not None:
            return _lib
        paths, explicit = _candidates()
        tried: List[str] = []
        for path in paths:
            if os.sep in path and not os.path.exists(path):
                tried.append(f"{path} (no such file)")
                continue
            try:
                lib = ctypes.CDLL(path)
            except OSError as err:
                tried.append(f"{path} ({err})")
                continue
            try:
                _declare(lib)
            except AttributeError as err:
                tried.append(f"{path} (not libtokenchecker: {err})")
                continue
            abi = lib.tc_abi_version()
            if abi != ABI_VERSION:
                raise LibraryNotFoundError(
                    f"{path} has C ABI generation {abi}, this tokenchecker package needs "
                    f"{ABI_VERSION}: install the matching library or package version"
                )
            info = _library_info(lib)
            STATUS.clear()
            STATUS.update(info["statuses"])
            LOG_LEVELS.clear()
            LOG_LEVELS.update(info["log_levels"])
            LOG_LEVELS["warning"] = LOG_LEVELS["warn"]
            from . import _core

            _core.bind(lib)  # the core (the extension, or _pycore) calls this copy of the library
            _lib, _path, _info = lib, path, info
            return lib
        where = (
            f"in ${LIB_DIR_ENV}={os.environ.get(LIB_DIR_ENV)!r}"
            if explicit
            else f"bundled in the package, in ${LIB_DIR_ENV} (unset), or on the system library path"
        )
        raise LibraryNotFoundError(
            "tokenchecker: cannot load the native library libtokenchecker "
            f"({where}); tried: " + "; ".join(tried) + ". Build it with `cargo build --release` and set "
            f"{LIB_DIR_ENV} to the directory holding it (e.g. target/release), or reinstall the "
            "package from a checkout where it was built."
        )


def library_path() -> str:
    """The path the library was loaded from (loading it if needed)."""
    load()
    assert _path is not None
    return _path


def library_info() -> Dict[str, Any]:
    """The facts the library states about itself (``tc_library_info``): ``version``,
    ``abi_version``, ``statuses`` (name -> number), ``sources`` (cache source names),
    ``config_keys`` and ``rule_keys``. Loads the library if needed. A copy."""
    load()
    doc: Dict[str, Any] = json.loads(json.dumps(_info))  # a deep copy: ours stays as the library said
    return doc


def status(name: str) -> int:
    """The number of a status (``"TC_OK"`` -> 0), from the library; -1 for a name it has not."""
    if not STATUS:
        load()
    return STATUS.get(name, -1)


def _flag(name: str) -> bool:
    value = os.environ.get(name, "")
    if value in ("", "0"):
        return False
    if value == "1":
        return True
    from .errors import InvalidConfigError

    raise InvalidConfigError(f"${name} must be 1, 0 or unset, not {value!r}")


def pure_requested() -> bool:
    """Whether ``TOKENCHECKER_PY_PURE=1`` asks for the ctypes implementation (read at import)."""
    return _flag(PURE_ENV)


_memo_bytes: Optional[int] = None


def memo_bytes() -> int:
    """The answer memo's bound: ``TOKENCHECKER_MEMO_BYTES`` (bytes, read once; default 16 MiB,
    0 turns the memo off)."""
    global _memo_bytes
    if _memo_bytes is None:
        raw = os.environ.get(MEMO_BYTES_ENV, "").strip()
        if raw == "":
            _memo_bytes = DEFAULT_MEMO_BYTES
        elif raw.isdigit():
            _memo_bytes = int(raw)
        else:
            from .errors import InvalidConfigError

            raise InvalidConfigError(f"${MEMO_BYTES_ENV} must be a number of bytes (0 turns the memo off), not {raw!r}")
    return _memo_bytes


def addresses(lib: ctypes.CDLL) -> Dict[str, int]:
    """name -> address of every ``tc_*`` function declared here (for the compiled extension)."""
    out: Dict[str, int] = {}
    for name in _DECLARED:
        addr = ctypes.cast(getattr(lib, name), c_void_p).value
        if addr:
            out[name] = addr
    return out


def take_string(lib: ctypes.CDLL, ptr: Optional[int]) -> str:
    """Copies a string the library returned and frees it."""
    if not ptr:
        return ""
    try:
        return ctypes.string_at(ptr).decode("utf-8", "replace")
    finally:
        lib.tc_string_free(ptr)


def status_name(status: int) -> str:
    """The name of a status number ("TC_UNKNOWN" for one the library does not know)."""
    for name, number in STATUS.items():
        if number == status:
            return name
    lib = _lib
    if lib is not None:
        raw = lib.tc_status_name(status)
        if raw:
            return str(raw.decode("ascii", "replace"))
    return "TC_UNKNOWN"


Call = Callable[..., int]
