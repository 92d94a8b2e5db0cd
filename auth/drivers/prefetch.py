"""``userdb prefetch``: the userdb fields a passdb already returned (``userdb_*`` columns of an
SQL ``password_query``, ``=userdb_…`` LDAP ``pass_attrs``), so a login needs one query.

Without prefetched fields (an auth-master USER lookup, or a passdb that returned none) the user
is unknown to this userdb and the chain goes on to the next one (usually the same database's
``user_query``), as in Dovecot.
"""

from __future__ import annotations

from cote.auth.drivers.base import UserdbDriver, UserdbLookup
from cote.auth.mechanisms import PassdbResult
from cote.auth.request import AuthRequest


class PrefetchUserdb(UserdbDriver):
    name = "prefetch"

    async def lookup(self, request: AuthRequest) -> UserdbLookup:
        if not request.userdb_fields:
            return UserdbLookup(PassdbResult.USER_UNKNOWN,
                                log="passdb didn't return userdb entries")
        return UserdbLookup(PassdbResult.OK, dict(request.userdb_fields))
