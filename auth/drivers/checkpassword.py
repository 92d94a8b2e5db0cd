"""checkpassword: qmail's program interface with Dovecot's extensions, as passdb and userdb.

``args`` names the program (``%`` variables expanded, split on spaces); cote appends its
``cote-checkpassword-reply`` as the last argument, the program runs it on success. The
program reads ``user NUL password NUL timestamp NUL`` on fd 3 and exits 0 (accepted: the
reply program wrote the user's fields on fd 4), 1 (refused; vpopmail's 3, 12, 13, 15, 20-23
too), 2 or 111 (an internal failure). For lookups without a password (userdb, auth-master
PASS, credentials for CRAM-MD5 …) it gets ``AUTHORIZED=1`` and answers 2 with the fields, 3
for an unknown user. Its environment names the request as Dovecot's does (``SERVICE``,
``TCPREMOTEIP``, ``AUTH_USER`` …).

The program runs in an auth-worker process (``CHECKPASSWORD``), so a slow or hung program
never holds the auth daemon's event loop; at most ``auth_worker_max_count`` run at once.
"""

from __future__ import annotations

import os
import shutil
import sys

from cote.auth.drivers.base import PassdbLookup, UserdbDriver, UserdbLookup
from cote.auth.drivers.plaintext import PlaintextPassdb
from cote.auth.mechanisms import PassdbResult
from cote.auth.protocol.escape import split_line
from cote.auth.request import AuthRequest
from cote.auth.workerclient import WorkerClient, WorkerError
from cote.variables import VariableError

MAX_REQUEST_LEN = 512  # user NUL password NUL NUL, as Dovecot limits it
Fields = list[tuple[str, str | None]]
Outcome = tuple[int, Fields, str] | str  # (exit status, reply fields, pid) or why not
# Request variables Dovecot leaves out of the environment when the request has none.
UNSET_WHEN_EMPTY = frozenset({"local_ip", "remote_ip", "local_port", "remote_port", "session",
                              "master_user", "home", "original_domain", "domain"})
REFUSED = frozenset({1, 3, 12, 13, 15, 20, 21, 22, 23})  # qmail's 1 and vpopmail's codes


def reply_program() -> str:
    """cote's checkpassword-reply: beside the running Python's scripts, else on PATH."""
    name = "cote-checkpassword-reply"
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.path.exists(beside) else (shutil.which(name) or beside)


def environment(request: AuthRequest) -> list[str]:
    """``KEY=value`` for the program: UCSPI names, Dovecot's legacy ones, ``AUTH_*``."""
    env = {"PROTO": "TCP", "ORIG_UID": str(os.getuid()), "SERVICE": request.service}
    if request.local_ip:
        env["TCPLOCALIP"] = env["LOCAL_IP"] = request.local_ip
    if request.remote_ip:
        env["TCPREMOTEIP"] = env["REMOTE_IP"] = request.remote_ip
    if request.local_port:
        env["TCPLOCALPORT"] = request.local_port
    if request.remote_port:
        env["TCPREMOTEPORT"] = request.remote_port
    if request.master_user:
        env["MASTER_USER"] = request.master_user
    for key, value in request.passdb_fields.items():  # from an earlier (e.g. master) passdb
        env[key.upper()] = "1" if value is None else value
    for key, value in request.values().items():
        if value is not None and key != "password" and (value or key not in UNSET_WHEN_EMPTY):
            env[f"AUTH_{key.upper()}"] = value
    env["AUTH_MECH"] = request.mechanism
    return [f"{k}={v}" for k, v in env.items() if "\0" not in k + v]


def parse_reply(output: str) -> list[tuple[str, str | None]]:
    """The reply program's ``key=value<TAB>`` fields (an empty value: a bare key)."""
    fields: list[tuple[str, str | None]] = []
    for item in split_line(output.encode("utf-8", "surrogateescape")):
        if item:
            key, _, value = item.partition("=")
            fields.append((key, value or None))
    return fields


class _Checkpassword:
    name = "checkpassword"

    def __init__(self, args: str) -> None:
        self.args = args
        self.worker = WorkerClient()
        self.reply_path = reply_program()

    async def run(self, request: AuthRequest, password: str | None,
                  extra_env: tuple[str, ...] = ()) -> Outcome:
        """(exit status, reply fields), or why the program could not give one."""
        size = len(request.user.encode()) + len((password or "").encode()) + 3
        if size > MAX_REQUEST_LEN:
            return f"Username+password combination too long ({size} bytes)"
        try:
            command = request.expand(self.args) if "%" in self.args else self.args
        except VariableError as e:
            return str(e)
        env = environment(request)
        if password is None:
            env += ["AUTHORIZED=1", *extra_env]
        try:
            reply = await self.worker.call("CHECKPASSWORD", f"{command} {self.reply_path}",
                                           request.user, password or "", *env)
        except WorkerError as e:
            return str(e)
        if reply[0] != "CHKPW" or len(reply) < 4 or not reply[1].isdigit():
            return " ".join(reply[2:]) or "bad auth-worker reply"
        status, output, pid = int(reply[1]), reply[2], reply[3]
        if "\n" in output:
            return "LF characters in checkpassword reply"
        return status, parse_reply(output), pid

    def lookup_status(self, result: Outcome) -> Fields | PassdbLookup:
        if isinstance(result, str):
            return PassdbLookup(PassdbResult.INTERNAL_FAILURE, log=result)
        status, fields, pid = result
        if status == 3:
            return PassdbLookup(PassdbResult.USER_UNKNOWN, log="User unknown")
        if status != 2:
            return PassdbLookup(PassdbResult.INTERNAL_FAILURE,
                                log=f"Child {pid} exited with status {status}")
        if not fields:
            return PassdbLookup(PassdbResult.INTERNAL_FAILURE, log="Received no input")
        return fields


def _rename(request: AuthRequest, fields: list[tuple[str, str | None]]) -> None:
    for key, value in fields:
        if key == "user" and value and value != request.user:
            request.original_user = request.original_user or request.user
            request.user = value


class CheckpasswordPassdb(_Checkpassword, PlaintextPassdb):
    async def authenticate(self, request: AuthRequest, password: bytes) -> PassdbLookup:
        result = await self.run(request, password.decode("utf-8", "surrogateescape"))
        if isinstance(result, str):
            result_code = PassdbResult.PASSWORD_MISMATCH if result.startswith("Username+") \
                else PassdbResult.INTERNAL_FAILURE
            return PassdbLookup(result_code, log=result)
        status, fields, pid = result
        if status in REFUSED:
            return PassdbLookup(PassdbResult.PASSWORD_MISMATCH,
                                log=f"Login failed (status={status})")
        if status == 0 and fields:
            _rename(request, fields)
            return PassdbLookup(PassdbResult.OK, None, self._extra(fields))
        if status == 0:
            return PassdbLookup(PassdbResult.INTERNAL_FAILURE, log="Received no input")
        if status == 2:
            return PassdbLookup(PassdbResult.INTERNAL_FAILURE, log=(
                f"Child {pid} exited with status 2 (tried to use userdb-only checkpassword "
                "program for passdb?)"))
        return PassdbLookup(PassdbResult.INTERNAL_FAILURE,
                            log=f"Child {pid} exited with status {status}")

    async def lookup(self, request: AuthRequest) -> PassdbLookup:
        """A lookup without the password (auth-master PASS, credentials for a mechanism)."""
        result = await self.run(request, None, ("CREDENTIALS_LOOKUP=1",
                                                f"SCHEME={request.credentials_scheme}"))
        status_fields = self.lookup_status(result)
        if isinstance(status_fields, PassdbLookup):
            return status_fields
        _rename(request, status_fields)
        password = next((v for k, v in status_fields if k == "password"), None)
        if password is None:
            return PassdbLookup(PassdbResult.SCHEME_NOT_AVAILABLE, fields=self._extra(
                status_fields), log="checkpassword did not return a password")
        return PassdbLookup(PassdbResult.OK, password, self._extra(status_fields), "PLAIN")

    @staticmethod
    def _extra(fields: list[tuple[str, str | None]]) -> dict[str, str | None]:
        return {k: v for k, v in fields if k not in ("user", "password")}


class CheckpasswordUserdb(_Checkpassword, UserdbDriver):
    async def lookup(self, request: AuthRequest) -> UserdbLookup:
        found = self.lookup_status(await self.run(request, None))
        if isinstance(found, PassdbLookup):
            return UserdbLookup(found.result, log=found.log)
        _rename(request, found)
        return UserdbLookup(PassdbResult.OK, {k[7:]: v for k, v in found
                                              if k.startswith("userdb_")})
