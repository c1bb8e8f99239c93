"""Loading libtokenchecker and declaring its C ABI (include/tokenchecker.h) for ctypes.

Every function is called through a plain ``ctypes.CDLL``, which releases the GIL for the whole
call: a check blocked on the network never stops other Python threads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from typing import Any, Callable, List, Optional, Tuple

#: The ABI generation this binding was written for (``TOKENCHECKER_ABI_VERSION`` of the header).
ABI_VERSION = 2

#: Environment variable naming a directory that holds the library; it wins over the bundled copy.
LIB_DIR_ENV = "TOKENCHECKER_LIB_DIR"

TC_OK = 0
TC_INVALID_ARGUMENT = 1
TC_INVALID_CONFIG = 2
TC_INACTIVE_TOKEN = 3
TC_INSUFFICIENT_SCOPE = 4
TC_WRONG_AUDIENCE = 5
TC_TOKEN_EXPIRED = 6
TC_NOT_AUTHORIZED = 7
TC_CREDENTIALS_REJECTED = 8
TC_AUTH_UNAVAILABLE = 9
TC_PANIC = 10
TC_WOULD_BLOCK = 11

STATUS_NAMES = {
    TC_OK: "TC_OK",
    TC_INVALID_ARGUMENT: "TC_INVALID_ARGUMENT",
    TC_INVALID_CONFIG: "TC_INVALID_CONFIG",
    TC_INACTIVE_TOKEN: "TC_INACTIVE_TOKEN",
    TC_INSUFFICIENT_SCOPE: "TC_INSUFFICIENT_SCOPE",
    TC_WRONG_AUDIENCE: "TC_WRONG_AUDIENCE",
    TC_TOKEN_EXPIRED: "TC_TOKEN_EXPIRED",
    TC_NOT_AUTHORIZED: "TC_NOT_AUTHORIZED",
    TC_CREDENTIALS_REJECTED: "TC_CREDENTIALS_REJECTED",
    TC_AUTH_UNAVAILABLE: "TC_AUTH_UNAVAILABLE",
    TC_PANIC: "TC_PANIC",
    TC_WOULD_BLOCK: "TC_WOULD_BLOCK",
}

LOG_LEVELS = {"off": 0, "error": 1, "warn": 2, "warning": 2, "info": 3, "debug": 4}


class LibraryNotFoundError(ImportError):
    """libtokenchecker could not be loaded; the message names every place that was tried."""


class tc_answer_meta(Structure):
    """``tc_answer_meta``: where a cached answer came from and how old it is."""

    # ``source`` is a static C string: kept as an address, decoded once per distinct address.
    _fields_ = [("source", c_void_p), ("age_ms", c_uint64)]


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
        # ABI generation 2: the answer handle and tc_groups.
        ("tc_check_answer", st, [vp, c_char_p, pvp, POINTER(tc_answer_meta), pvp]),
        ("tc_try_check_answer", st, [vp, c_char_p, pvp, POINTER(tc_answer_meta), pvp]),
        ("tc_answer_text", vp, [vp, POINTER(c_size_t)]),
        ("tc_answer_id", c_uint64, [vp]),
        ("tc_answer_retain", vp, [vp]),
        ("tc_answer_free", None, [vp]),
        ("tc_groups", st, [vp, c_char_p, pvp]),
    ]
    for name, restype, argtypes in sigs:
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_path: Optional[str] = None


def load() -> ctypes.CDLL:
    """The library, loaded once (thread-safe); raises :class:`LibraryNotFoundError`."""
    global _lib, _path
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
            _lib, _path = lib, path
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


def use_answer_api() -> bool:
    """Whether checks go through the answer handle (the default) or decode the whole result
    document of ``tc_check`` on every call (``TOKENCHECKER_PY_NO_ANSWER=1``: for comparison)."""
    return os.environ.get("TOKENCHECKER_PY_NO_ANSWER") != "1"


def take_string(lib: ctypes.CDLL, ptr: Optional[int]) -> str:
    """Copies a string the library returned and frees it."""
    if not ptr:
        return ""
    try:
        return ctypes.string_at(ptr).decode("utf-8", "replace")
    finally:
        lib.tc_string_free(ptr)


def status_name(status: int) -> str:
    name = STATUS_NAMES.get(status)
    if name is not None:
        return name
    lib = _lib
    if lib is not None:
        raw = lib.tc_status_name(status)
        if raw:
            return str(raw.decode("ascii", "replace"))
    return "TC_UNKNOWN"


Call = Callable[..., int]
