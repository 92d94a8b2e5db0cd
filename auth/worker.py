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

    auth → worker: CHECKPASSWORD <id> <command> <user> <password> <KEY=value>...
                   (command: the checkpassword program, its args and the reply program,
                    split on spaces as Dovecot does; the KEY=value fields its environment)
    worker → auth: CHKPW <id> <exit status> <what the program wrote to fd 4> <its pid>
                   |  FAIL <id> internal_failure <why> (not started, killed, timed out)

A line the worker does not understand gets ``FAIL <id> internal_failure <why>``. After
``max_requests`` requests (the PAM passdb's option, sent as ``MAX <n>``) the worker exits
when its client hangs up, as Dovecot's ``max_requests`` recycles PAM state.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import socket
import time

from cote.auth import drivers, pam
from cote.auth.protocol.escape import join_line, split_line
from cote.config import Config
from cote.ipc import ServiceContext

READ_CHUNK = 65536
SHADOW_PATH = "/etc/shadow"
CHECKPASSWORD_TIMEOUT = 25.0  # below the auth process's WORKER_TIMEOUT
CHECKPASSWORD_MAX_OUTPUT = 65536

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


def _high_fd(fd: int) -> int:
    """A close-on-exec copy of ``fd`` numbered above 4, so dup2 onto 3 and 4 never meets it."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


def run_checkpassword(argv: list[str], data: bytes, env: dict[str, str],
                      timeout: float = CHECKPASSWORD_TIMEOUT) -> tuple[int, bytes, int] | str:
    """Run a checkpassword program: ``data`` on its fd 3, what it (its reply program) writes
    on fd 4 collected; (exit status, output, pid), or why it did not run to its end."""
    in_r, in_w = map(_high_fd, os.pipe())
    out_r, out_w = map(_high_fd, os.pipe())
    try:
        pid = os.posix_spawn(argv[0], argv, env, file_actions=[
            (os.POSIX_SPAWN_DUP2, in_r, 3), (os.POSIX_SPAWN_DUP2, out_w, 4)])
    except OSError as e:
        for fd in (in_r, in_w, out_r, out_w):
            os.close(fd)
        return f"execv({argv[0]}) failed: {e.strerror}"
    os.close(in_r)
    os.close(out_w)
    try:
        os.write(in_w, data)  # at most 512 bytes: fits the pipe, never blocks
    except OSError:
        pass  # the program exited without reading: its status says why
    os.close(in_w)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([out_r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return f"Child {pid} timed out"
            chunk = os.read(out_r, 4096)
            if not chunk:
                break
            output += chunk
            if len(output) > CHECKPASSWORD_MAX_OUTPUT:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return f"Child {pid} wrote too much"
    finally:
        os.close(out_r)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"Child {pid} died with signal {os.WTERMSIG(status)}"
    return os.WEXITSTATUS(status), output, pid


def checkpassword_reply(fields: list[str]) -> list[str]:
    """``CHECKPASSWORD id command user password KEY=value...`` → CHKPW/FAIL fields."""
    rid = fields[1] if len(fields) > 1 else "0"
    if len(fields) < 5:
        return ["FAIL", rid, "internal_failure", "CHECKPASSWORD needs 5 fields"]
    command, user, password = fields[2:5]
    argv = [word for word in command.split(" ") if word]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for item in fields[5:]:
        key, _, value = item.partition("=")
        env[key] = value
    data = user.encode("utf-8", "surrogateescape") + b"\0" + \
        password.encode("utf-8", "surrogateescape") + b"\0\0"
    if not argv or "\0" in user or "\0" in password:
        return ["FAIL", rid, "internal_failure", "bad checkpassword request"]
    result = run_checkpassword(argv, data, env)
    if isinstance(result, str):
        return ["FAIL", rid, "internal_failure", result]
    status, output, pid = result
    return ["CHKPW", rid, str(status), output.decode("utf-8", "surrogateescape"), str(pid)]


def answer(line: bytes) -> bytes:
    fields = split_line(line)
    command = fields[0]
    if command == "PAM":
        return join_line(pam_reply(fields))
    if command == "SHADOW":
        return join_line(shadow_reply(fields))
    if command == "CHECKPASSWORD":
        return join_line(checkpassword_reply(fields))
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


def prepare(config: Config) -> dict[str, object]:
    """Before the master forks this service: import the passdb/userdb drivers the config
    names (see ``cote.auth.drivers.preload``)."""
    drivers.preload(config)
    return {}


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
