"""static: the same answer for every user (a shared password, or one uid/gid/home template
for all virtual users — the usual userdb for passwd-file/SQL/LDAP-authenticated users)."""

from __future__ import annotations

from cote.auth.drivers.base import PassdbDriver, PassdbLookup, UserdbDriver, UserdbLookup
from cote.auth.mechanisms import PassdbResult
from cote.auth.request import AuthRequest, parse_fields


class StaticPassdb(PassdbDriver):
    name = "static"

    async def lookup(self, request: AuthRequest) -> PassdbLookup:
        fields = parse_fields(self.args, request)
        password = fields.pop("password", None)
        if "nopassword" in fields:
            password = None
        return PassdbLookup(PassdbResult.OK, password, fields, "PLAIN")


class StaticUserdb(UserdbDriver):
    name = "static"

    async def lookup(self, request: AuthRequest) -> UserdbLookup:
        fields = parse_fields(self.args, request)
        fields.pop("allow_all_users", None)
        return UserdbLookup(PassdbResult.OK, fields)
