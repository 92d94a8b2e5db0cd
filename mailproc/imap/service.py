"""The imap service: receives an authenticated client from imap-login and serves its mail.

``run(ctx)`` is the master's entry point (service ``imap``). As the pop3 service does, the
process starts as root, takes one hand-off on its ``login/imap`` socket, confirms the login
with the auth daemon (auth-master REQUEST: nothing the login process says about the user is
believed), answers the login process, drops to the user's uid/gid and only then opens mail.
It then writes the tagged ``OK [CAPABILITY …] Logged in`` for the client's LOGIN or
AUTHENTICATE (imap-login passes the tag, and whether the client already asked for
CAPABILITY, in the hand-off's ``imap_tag``/``imap_capability_sent``). One process, one user.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket

from cote.config import Config
from cote.handoff import HandoffReply, HandoffRequest
from cote.ipc import ServiceContext
from cote.log import Logger, mail_log_prefix
from cote.mailproc.mailuser import MailUser, MailUserError, drop_privileges, resolve
from cote.mailproc.pop3.service import receive_handoff
from cote.mailproc.userdb import UserdbError, UserNotFound, confirm_login
from cote.storage import StorageError, open_storage

from . import response as R
from .connection import Connection
from .server import serve
from .session import SERVERBUG, Session, autocreate
from .settings import ImapSettings


def login_reply(request: HandoffRequest, settings: ImapSettings) -> bytes:
    """What Dovecot's imap process writes first: the LOGIN/AUTHENTICATE command's reply."""
    tag = request.extra.get("imap_tag") or "*"
    if request.extra.get("imap_capability_sent"):
        return R.capability(settings.capability) + R.tagged(tag, "OK", "Logged in")
    return R.tagged(tag, "OK", "Logged in", R.capability_code(settings.capability))


def serve_client(ctx: ServiceContext, cfg: Config, conn: socket.socket) -> int:
    try:
        request, client = receive_handoff(conn)
    except (OSError, ValueError) as e:
        ctx.log.error(f"Invalid hand-off from a login process: {e}")
        return 1
    try:
        reply = confirm_login(os.path.join(ctx.base_dir, "auth-master"),
                              auth_pid=request.auth_pid, client_pid=request.client_pid,
                              client_id=request.auth_id, cookie=bytes.fromhex(request.cookie))
        extra = {"session": request.session, "remote_ip": request.remote_ip,
                 "local_ip": request.local_ip, "pid": str(os.getpid())}
        user = resolve(cfg, reply.user, reply.fields, "imap", extra)
    except (UserdbError, UserNotFound, MailUserError, ValueError) as e:
        ctx.log.error(f"Login for {request.user} could not be confirmed: {e}")
        _answer(conn, HandoffReply(False, reason=SERVERBUG))
        client.close()
        return 1
    _answer(conn, HandoffReply(True, mail_pid=os.getpid()))
    log = ctx.log.with_prefix(mail_log_prefix(cfg, {
        "service": "imap", "user": user.user, "pid": str(os.getpid()),
        "session": request.session}))
    ctx.set_title(f"{user.user} {request.remote_ip}")
    try:
        drop_privileges(user, cfg)
        return _serve_mail(cfg, user, client, request, log)
    except MailUserError as e:
        log.error(str(e))
        client.sendall(R.untagged("BYE", SERVERBUG))
        client.close()
        return 1


def _answer(conn: socket.socket, reply: HandoffReply) -> None:
    try:
        conn.sendall(reply.encode())
    except OSError:
        pass
    conn.close()


def _serve_mail(cfg: Config, user: MailUser, client: socket.socket, request: HandoffRequest,
                log: Logger) -> int:
    settings = ImapSettings.from_config(cfg)
    try:
        mailboxes = open_storage(user.mail_location, home=user.home, config=cfg.get,
                                 separator=settings.separator,
                                 special_use=dict(settings.special_use))
        autocreate(mailboxes, settings)
    except StorageError as e:
        log.error(f"Couldn't open mail storage: {e}")
        client.sendall(R.untagged("BYE", SERVERBUG))
        client.close()
        return 1
    max_line = cfg.get("imap_max_line_length")
    conn = Connection(commands=settings.commands(),
                      max_line_length=int(max_line) if isinstance(max_line, int) else None)
    session = Session(mailboxes, conn, user.user, settings, log)

    async def run_session() -> None:
        reader, writer = await asyncio.open_connection(sock=client, limit=1 << 20)
        await serve(reader, writer, session, log, pipelined=request.pipelined,
                    greeting=login_reply(request, settings))

    try:
        asyncio.run(run_session())
    finally:
        client.close()
    return 0


def run(ctx: ServiceContext) -> int:
    ctx.install_default_signals()
    cfg = ctx.config.lookup(protocol="imap")
    sockets: list[socket.socket] = [lst.sock for lst in ctx.listeners
                                    if lst.kind == "unix" and lst.sock is not None]
    if not sockets:
        ctx.log.error("imap service has no unix_listener (e.g. login/imap)")
        return 1
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
            except BlockingIOError:
                continue  # another imap process took it
            ctx.client_connected()
            ctx.stop_accepting()
            with conn:
                code = serve_client(ctx, cfg, conn)
            ctx.client_disconnected()
            return code
    return 0
