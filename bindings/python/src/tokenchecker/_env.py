"""Configuration from the environment (the variables the CLI reads).

| variable | configuration key |
| --- | --- |
| ``TC_CLIENT_ID`` | ``client_id`` |
| ``TC_CLIENT_SECRET`` | ``client_secret`` |
| ``TC_SCOPES`` (space-separated) | ``expected_scopes`` |
| ``TC_AUTH_URL`` | ``auth_url`` |
| ``TC_GROUPS_URL`` | ``groups_url`` |

An empty variable counts as unset. Explicit arguments always win over the environment.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional

#: variable -> configuration key, in the order documented.
ENV_KEYS = (
    ("TC_CLIENT_ID", "client_id"),
    ("TC_CLIENT_SECRET", "client_secret"),
    ("TC_SCOPES", "expected_scopes"),
    ("TC_AUTH_URL", "auth_url"),
    ("TC_GROUPS_URL", "groups_url"),
)

#: The variables a checker cannot do without (``TokenChecker.from_env``).
REQUIRED_ENV_KEYS = ENV_KEYS[:3]

#: The variables that only name service URLs (what ``tokenchecker.apt.install`` reads).
URL_ENV_KEYS = ENV_KEYS[3:]


def _get(environ: Mapping[str, str], name: str) -> Optional[str]:
    value = environ.get(name)
    return value if value else None


def from_environment(
    keys: Any = ENV_KEYS, environ: Optional[Mapping[str, str]] = None
) -> Dict[str, Any]:
    """The configuration keys set in the environment (``expected_scopes`` split on spaces)."""
    env = os.environ if environ is None else environ
    out: Dict[str, Any] = {}
    for name, key in keys:
        value = _get(env, name)
        if value is None:
            continue
        out[key] = value.split() if key == "expected_scopes" else value
    return out


def merged(explicit: Mapping[str, Any], keys: Any = ENV_KEYS) -> Dict[str, Any]:
    """The environment's keys overlaid by the explicit ones (explicit wins, even ``None``)."""
    out = from_environment(keys)
    out.update(explicit)
    return out


__all__ = ["ENV_KEYS", "REQUIRED_ENV_KEYS", "URL_ENV_KEYS", "from_environment", "merged"]
