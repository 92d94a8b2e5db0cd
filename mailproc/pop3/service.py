"""The pop3 service: receives an authenticated client from pop3-login and serves its maildrop.

``run(ctx)`` is the master's entry point. The process starts as root (warm, from the master's
fork), takes one hand-off on its ``login/pop3`` socket, asks the auth daemon to confirm the
login (auth-master REQUEST: it believes nothing the login process says about who the user
is), answers the login process, drops to the user's uid/gid, and only then opens mail. One
process never serves two users.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket

from cote.config import Config
from cote.handoff import MAX_MESSAGE, HandoffError, HandoffReply, HandoffRequest
from cote.ipc import ServiceContext
from cote.log import Logger, mail_log_prefix
from cote.mailproc.mailuser import MailUser, MailUserError, drop_privileges, resolve
from cote.mailproc.pop3.maildrop import Maildrop, Pop3Settings, UidlFormatError
from cote.mailproc.pop3.server import serve
from cote.mailproc.userdb import UserdbError, UserNotFound, confirm_login
from cote.storage import StorageError
from cote.storage.namespaces import Namespaces

HANDOFF_TIMEOUT = 30.0


def receive_handoff(conn: socket.socket) -> tuple[HandoffRequest, socket.socket]:
    """Read the hand-off line and the client's socket that came with it."""
    conn.settimeout(HANDOFF_TIMEOUT)
    data, fds = b"", []
    while not data.endswith(b"\n"):
        chunk, new_fds, _, _ = socket.recv_fds(conn, MAX_MESSAGE, 2)
        fds += new_fds
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_MESSAGE:
            break
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise HandoffError(f"expected one client socket, got {len(fds)}")
    client = socket.socket(fileno=fds[0])
    try:
        return HandoffRequest.decode(data), client
    except HandoffError:
        client.close()
        raise


def serve_client(ctx: ServiceContext, cfg: Config, conn: socket.socket) -> int:
    try:
        request, client = receive_handoff(conn)
    except (OSError, HandoffError) as e:
        ctx.log.error(f"Invalid hand-off from a login process: {e}")
        return 1
    try:
        reply = confirm_login(os.path.join(ctx.base_dir, "auth-master"),
                              auth_pid=request.auth_pid, client_pid=request.client_pid,
                              client_id=request.auth_id, cookie=bytes.fromhex(request.cookie))
        extra = {"session": request.session, "remote_ip": request.remote_ip,
                 "local_ip": request.local_ip, "pid": str(os.getpid())}
        user = resolve(cfg, reply.user, reply.fields, "pop3", extra)
    except (UserdbError, UserNotFound, MailUserError, ValueError) as e:
        ctx.log.error(f"Login for {request.user} could not be confirmed: {e}")
        _answer(conn, HandoffReply(False, reason="Internal error occurred. Refer to server "
                                                 "log for more information."))
        client.close()
        return 1
    _answer(conn, HandoffReply(True, mail_pid=os.getpid()))
    log = ctx.log.with_prefix(mail_log_prefix(cfg, {
        "service": "pop3", "user": user.user, "pid": str(os.getpid()),
        "session": request.session}))
    ctx.set_title(f"{user.user} {request.remote_ip}")
    try:
        drop_privileges(user, cfg)
        return _serve_maildrop(cfg, user, client, request.pipelined, log)
    except MailUserError as e:
        log.error(str(e))
        client.sendall(b"-ERR [SYS/TEMP] Internal error occurred.\r\n")
        client.close()
        return 1


def _answer(conn: socket.socket, reply: HandoffReply) -> None:
    try:
        conn.sendall(reply.encode())
    except OSError:
        pass
    conn.close()


def _serve_maildrop(cfg: Config, user: MailUser, client: socket.socket, pipelined: bytes,
                    log: Logger) -> int:
    try:
        mailboxes = Namespaces.from_config(cfg, user.fields, user=user.user,
                                           mail_location=user.mail_location, home=user.home,
                                           service="pop3")
        with mailboxes.open("INBOX") as inbox:
            maildrop = Maildrop(inbox, Pop3Settings.from_config(cfg))

            async def session() -> None:
                reader, writer = await asyncio.open_connection(sock=client)
                await serve(reader, writer, maildrop, log, pipelined=pipelined)

            asyncio.run(session())
    except UidlFormatError as e:
        log.error(str(e))
        client.sendall(b"-ERR [SYS/PERM] Invalid pop3_uidl_format setting\r\n")
        return 1
    except StorageError as e:
        log.error(f"Couldn't open INBOX: {e}")
        client.sendall(b"-ERR [SYS/TEMP] Couldn't open INBOX\r\n")
        return 1
    finally:
        client.close()
    return 0


def run(ctx: ServiceContext) -> int:
    ctx.install_default_signals()
    cfg = ctx.config.lookup(protocol="pop3")
    sockets: list[socket.socket] = [lst.sock for lst in ctx.listeners
                                    if lst.kind == "unix" and lst.sock is not None]
    if not sockets:
        ctx.log.error("pop3 service has no unix_listener (e.g. login/pop3)")
        return 1
    for sock in sockets:
        # Shared with the service's other processes: whoever loses an accept race must get
        # EAGAIN and go back to select (watching the master-death pipe), not block.
        sock.setblocking(False)
    ctx.status.report(ctx.available())
    while ctx.accepting:
        readable, _, _ = select.select([*(s.fileno() for s in sockets),
                                        ctx.master_death_fd], [], [])
        if ctx.master_death_fd in readable:
            return 0
        for sock in sockets:
            if sock.fileno() not in readable:
                continue
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                continue  # another pop3 process took it
            conn.setblocking(True)
            # One user per process: after this client the process exits.
            ctx.client_connected()
            ctx.stop_accepting()
            with conn:
                code = serve_client(ctx, cfg, conn)
            ctx.client_disconnected()
            return code
    return 0
