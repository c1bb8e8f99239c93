"""The module path of the original: ``globus_action_provider_tools.authentication``.

``from tokenchecker.authentication import TokenChecker, AuthState, identity_principal``
"""

from ._checker import (
    GROUPS_SCOPE,
    AuthState,
    TokenChecker,
    group_principal,
    identity_principal,
)
from .errors import ConfigurationError

__all__ = [
    "GROUPS_SCOPE",
    "AuthState",
    "ConfigurationError",
    "TokenChecker",
    "group_principal",
    "identity_principal",
]
