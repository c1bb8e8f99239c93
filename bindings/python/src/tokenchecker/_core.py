"""Which implementation of the hot paths runs: the compiled extension ``tokenchecker._speedups``
or, without it, ``tokenchecker._pycore`` (the same interface over ctypes).

Chosen once, at import: ``TOKENCHECKER_PY_PURE=1`` selects ctypes; otherwise the extension when
it is installed (a wheel, or a build from source with a C compiler), ctypes when it is absent.
Both give the same answers (the test suite runs once with each); the extension is several times
faster on cached checks. :func:`tokenchecker.implementation` says which one runs.
"""

from __future__ import annotations

import ctypes
import importlib
from typing import TYPE_CHECKING

from . import _native as n

IMPLEMENTATIONS = ("extension", "ctypes")

if TYPE_CHECKING:
    # _speedups.pyi states the interface; _pycore implements it too
    from . import _speedups as core

    IMPLEMENTATION: str
else:
    if n.pure_requested():
        from . import _pycore as core

        IMPLEMENTATION = "ctypes"
    else:
        _name = f"{__package__}._speedups"
        try:
            core = importlib.import_module(_name)
        except ModuleNotFoundError as err:
            if err.name != _name:  # the extension is there, something it needs is not: say so
                raise
            # not built (a pure wheel, a build without a C compiler): the ctypes layer
            from . import _pycore as core

            IMPLEMENTATION = "ctypes"
        else:
            IMPLEMENTATION = "extension"


def bind(lib: ctypes.CDLL) -> None:
    """Points the implementation at the loaded library (called once, by ``_native.load``)."""
    from .errors import from_status

    if IMPLEMENTATION == "ctypes":
        from . import _pycore

        _pycore.set_library(lib)
    core.bind(n.addresses(lib), n.memo_bytes(), from_status)


__all__ = ["IMPLEMENTATION", "IMPLEMENTATIONS", "bind", "core"]
