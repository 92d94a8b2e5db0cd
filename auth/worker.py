"""The auth-worker service: blocking, root-only lookups (PAM, /etc/shadow) in processes of
their own, so the auth daemon's event loop never waits on them.

The master starts ``service auth-worker`` (executable ``auth -w``; ``user = root``,
``client_limit = 1``) on demand when the auth process connects to the ``auth-worker``
unix listener in base_dir. One connection is one conversation, one request at a time; the
master starts more workers while every worker is busy, up to ``process_limit``.

Protocol (lines of TAB-separated fields, values escaped as in Dovecot's auth protocols:
0x01 → ``\\x01 1``, TAB → ``\\x01 t``, CR → ``\\x01 r``, LF → ``\\x01 n``)::

    auth → worker: PAM <id> <pam service> <user> <password> <rhost> <ruser> <flags>
                   (flags: comma-separated ``session``, ``setcred``)
    worker → auth: OK <id> <user as PAM left it>
                   FAIL <id> <result> <message>
                   (result: password_mismatch | user_unknown | pass_expired |
                    user_disabled | internal_failure)

    auth → worker: SHADOW <id> <user>
    worker → auth: PASS <id> <user> <stored password>  |  NOTFOUND <id>  |  FAIL <id> <why>

A line the worker does not understand gets ``FAIL <id> internal_failure <why>``. After
``max_requests`` requests (the PAM passdb's option, sent as ``MAX <n>``) the worker exits
when its client hangs up, as Dovecot's ``max_requests`` recycles PAM state.
"""

from __future__ import annotations

import select
import socket

from cote.auth import pam
from cote.auth.protocol.escape import join_line, split_line
from cote.ipc import ServiceContext

READ_CHUNK = 65536
SHADOW_PATH = "/etc/shadow"

PAM_RESULTS = {
    pam.PAM_USER_UNKNOWN: "user_unknown",
    pam.PAM_NEW_AUTHTOK_REQD: "pass_expired",
    pam.PAM_ACCT_EXPIRED: "pass_expired",
}


def pam_reply(fields: list[str]) -> list[str]:
    """``PAM id service user password rhost ruser flags`` → OK/FAIL fields."""
    if len(fields) < 8:
        return ["FAIL", fields[1] if len(fields) > 1 else "0", "internal_failure",
                "PAM request needs 8 fields"]
    _cmd, rid, service, user, password, rhost, ruser, flags = fields[:8]
    opts = set(flags.split(","))
    if "\0" in user or "\0" in service:  # C strings would end there: never a shorter name
        return ["FAIL", rid, "user_unknown", "user name contains NUL"]
    try:
        outcome = pam.authenticate(service, user, password, rhost=rhost, ruser=ruser,
                                   session="session" in opts, setcred="setcred" in opts)
    except OSError as e:
        return ["FAIL", rid, "internal_failure", f"libpam: {e}"]
    if outcome.status == pam.PAM_SUCCESS:
        return ["OK", rid, outcome.user]
    result = PAM_RESULTS.get(outcome.status, "password_mismatch")
    message = "; ".join(outcome.messages) or f"{outcome.step}() failed: {outcome.error}"
    return ["FAIL", rid, result, message]


def shadow_reply(fields: list[str], path: str = SHADOW_PATH) -> list[str]:
    if len(fields) < 3:
        return ["FAIL", fields[1] if len(fields) > 1 else "0", "SHADOW needs a user"]
    rid, user = fields[1], fields[2]
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                cols = line.rstrip("\n").split(":")
                if cols[0] == user and len(cols) > 1:
                    return ["PASS", rid, user, cols[1]]
    except OSError as e:
        return ["FAIL", rid, f"{path}: {e.strerror}"]
    return ["NOTFOUND", rid]


def answer(line: bytes) -> bytes:
    fields = split_line(line)
    command = fields[0]
    if command == "PAM":
        return join_line(pam_reply(fields))
    if command == "SHADOW":
        return join_line(shadow_reply(fields))
    rid = fields[1] if len(fields) > 1 else "0"
    return join_line(["FAIL", rid, "internal_failure", f"unknown command {command!r}"])


class WorkerState:
    """Requests served and the recycling limit the auth process asked for."""

    def __init__(self) -> None:
        self.served = 0
        self.max_requests = 0

    def done(self) -> bool:
        return self.max_requests > 0 and self.served >= self.max_requests


def serve_connection(conn: socket.socket, state: WorkerState, death_fd: int) -> None:
    buf = b""
    while True:
        ready, _, _ = select.select([conn.fileno(), death_fd], [], [])
        if death_fd in ready:
            return
        data = conn.recv(READ_CHUNK)
        if not data:
            return
        buf += data
        while b"\n" in buf:
            line, _, buf = buf.partition(b"\n")
            if line.startswith(b"MAX\t"):
                digits = line[4:].decode("ascii", "replace")
                state.max_requests = int(digits) if digits.isdigit() else 0
                continue
            conn.sendall(answer(line))
            state.served += 1
            if state.done():
                return  # recycled: the auth process reconnects to a fresh worker


def run(ctx: ServiceContext) -> int:
    ctx.install_default_signals()
    listener = ctx.listener("auth-worker").sock
    if listener is None:
        ctx.log.error("auth-worker: no auth-worker listener")
        return 1
    listener.setblocking(False)  # shared with the other workers: whoever accepts first
    state = WorkerState()
    ctx.status.report(ctx.available())
    while ctx.accepting and not state.done():
        ready, _, _ = select.select([listener.fileno(), ctx.master_death_fd], [], [])
        if ctx.master_death_fd in ready:
            break
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            continue  # another worker took it
        conn.setblocking(True)
        ctx.client_connected()
        try:
            with conn:
                serve_connection(conn, state, ctx.master_death_fd)
        except OSError as e:
            ctx.log.error(f"auth-worker: {e}")
        finally:
            ctx.client_disconnected()
    return 0
