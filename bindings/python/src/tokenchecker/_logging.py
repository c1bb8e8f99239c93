"""Forwarding the library's log lines to Python's ``logging``."""

from __future__ import annotations

import logging
import threading
from typing import Any, Optional

from . import _native as n
from . import errors as e

#: The logger that receives libtokenchecker's messages (they never hold a token or a secret).
logger = logging.getLogger("tokenchecker")

_PY_LEVELS = {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO, 4: logging.DEBUG}
_lock = threading.Lock()
_installed: Optional[Any] = None


def _on_log(user_data: Any, level: int, message: Optional[bytes]) -> None:
    try:
        text = message.decode("utf-8", "replace") if message else ""
        logger.log(_PY_LEVELS.get(level, logging.INFO), "%s", text)
    except BaseException:  # noqa: BLE001 - never into the C runtime
        pass


def set_log_level(level: Optional[str] = "warn") -> None:
    """Sends the library's messages at ``level`` (``"error"``, ``"warn"``, ``"info"``,
    ``"debug"``) and more severe to the ``tokenchecker`` logger; ``None`` or ``"off"`` stops
    them. One setting per process."""
    global _installed
    lib = n.load()
    key = "off" if level is None else str(level).lower()
    if key not in n.LOG_LEVELS:
        names = ", ".join(sorted(n.LOG_LEVELS, key=n.LOG_LEVELS.__getitem__))
        raise e.InvalidArgumentError(f"unknown log level {level!r} ({names})")
    with _lock:
        if n.LOG_LEVELS[key] == 0:
            st = lib.tc_set_logger(n.LOG_CALLBACK(), None, 0)
            _installed = None
        else:
            cb = n.LOG_CALLBACK(_on_log)
            st = lib.tc_set_logger(cb, None, n.LOG_LEVELS[key])
            _installed = cb  # kept alive while the library may call it
        if st != n.status("TC_OK"):
            raise e.from_status(st)
