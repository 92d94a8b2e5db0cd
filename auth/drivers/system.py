"""The system's own user databases: ``userdb passwd`` (getpwnam: uid, gid, home) and
``passdb shadow`` (the crypt hash in /etc/shadow, read by a root auth-worker process).

getpwnam may go over the network (NSS LDAP, sssd), so it runs in a thread.
"""

from __future__ import annotations

import asyncio
import pwd
from collections.abc import AsyncIterator

from cote.auth.drivers.base import PassdbDriver, PassdbLookup, UserdbDriver, UserdbLookup
from cote.auth.mechanisms import PassdbResult
from cote.auth.request import AuthRequest
from cote.auth.workerclient import WorkerClient, WorkerError


def _getpwnam(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except (KeyError, ValueError):  # ValueError: an embedded NUL
        return None


class PasswdUserdb(UserdbDriver):
    name = "passwd"

    async def lookup(self, request: AuthRequest) -> UserdbLookup:
        pw = await asyncio.get_running_loop().run_in_executor(None, _getpwnam, request.user)
        if pw is None:
            return UserdbLookup(PassdbResult.USER_UNKNOWN, log="unknown user")
        return UserdbLookup(PassdbResult.OK, {
            "system_groups_user": pw.pw_name, "uid": str(pw.pw_uid), "gid": str(pw.pw_gid),
            "home": pw.pw_dir})

    def can_iterate(self) -> bool:
        return True

    async def iterate(self) -> AsyncIterator[str]:
        users = await asyncio.get_running_loop().run_in_executor(None, pwd.getpwall)
        for pw in users:
            yield pw.pw_name


class ShadowPassdb(PassdbDriver):
    name = "shadow"

    def __init__(self, args: str) -> None:
        super().__init__(args)
        self.worker = WorkerClient()

    async def lookup(self, request: AuthRequest) -> PassdbLookup:
        try:
            reply = await self.worker.call("SHADOW", request.user)
        except WorkerError as e:
            return PassdbLookup(PassdbResult.INTERNAL_FAILURE, log=str(e))
        if reply[0] == "PASS" and len(reply) > 2:
            # Dovecot keeps the system's user name as a hidden field: an empty one on the wire.
            return PassdbLookup(PassdbResult.OK, reply[2], {"": None}, "CRYPT")
        if reply[0] == "NOTFOUND":
            return PassdbLookup(PassdbResult.USER_UNKNOWN, log="unknown user")
        return PassdbLookup(PassdbResult.INTERNAL_FAILURE, log=" ".join(reply[1:]))
