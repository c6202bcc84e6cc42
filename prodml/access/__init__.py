"""Who may do what: identities (named tokens with a role) and the first admin token.

The HTTP checks that use them (allowed hosts, same-origin, CSRF, the role each route needs)
are in :mod:`prodml.serving.gate`; ``prodml tokens`` manages them from the command line.
"""

from prodml.access.local_admin import LocalAdmin, ensure_local_admin
from prodml.access.roles import Role
from prodml.access.tokens import (Identity, NewToken, TokenRecord, TokenVerifier, create_token,
                                  identify, list_tokens, revoke_token)

__all__ = ["Identity", "LocalAdmin", "NewToken", "Role", "TokenRecord", "TokenVerifier",
           "create_token", "ensure_local_admin", "identify", "list_tokens", "revoke_token"]
