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
import socket
from collections.abc import Callable, Mapping

from cote.config import Config
from cote.handoff import HandoffRequest
from cote.ipc import ServiceContext
from cote.log import Logger
from cote.mailproc.handoffservice import run_service
from cote.mailproc.mailuser import MailUser, MailUserError, resolve
from cote.mailproc.userdb import UserdbError, UserNotFound, lookup_user
from cote.storage import StorageError
from cote.storage.namespaces import Namespaces

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


def userdb_lookup(cfg: Config, log: Logger) -> Callable[[str], Mapping[str, str] | None]:
    """Shared namespaces' ``%%u``/``%%h``: another user's home and mail location from an
    auth-userdb USER lookup (the process already runs as the user: auth-master is root's)."""
    path = os.path.join(str(cfg.get("base_dir")), "auth-userdb")

    def lookup(name: str) -> Mapping[str, str] | None:
        try:
            reply = lookup_user(path, name, {"service": "imap"})
            other = resolve(cfg, reply.user, reply.fields, "imap")
        except UserNotFound:
            return None
        except (UserdbError, MailUserError) as e:
            log.error(f"shared namespace: userdb lookup for {name} failed: {e}")
            return None
        return {**reply.fields, "home": other.home or "", "mail": other.mail_location}

    return lookup


def _serve_mail(cfg: Config, user: MailUser, client: socket.socket, request: HandoffRequest,
                log: Logger) -> int:
    settings = ImapSettings.from_config(cfg)
    try:
        mailboxes = Namespaces.from_config(cfg, user.fields, user=user.user,
                                           mail_location=user.mail_location, home=user.home,
                                           service="imap", user_lookup=userdb_lookup(cfg, log))
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
    return run_service(ctx, "imap", _serve_mail, failure_reason=SERVERBUG,
                       failure_line=R.untagged("BYE", SERVERBUG))
