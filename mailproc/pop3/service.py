"""The pop3 service: receives an authenticated client from pop3-login and serves its maildrop.

``run(ctx)`` is the master's entry point. The process starts as root (warm, from the master's
fork), takes one hand-off on its ``login/pop3`` socket, asks the auth daemon to confirm the
login (auth-master REQUEST: it believes nothing the login process says about who the user
is), answers the login process, drops to the user's uid/gid, and only then opens mail. One
process never serves two users.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from cote.config import Config
from cote.handoff import HandoffRequest
from cote.ipc import ServiceContext
from cote.log import Logger
from cote.mailproc.channel import Channel
from cote.mailproc.handoffservice import (
    prepare_service,
    prepared_settings,
    run_service,
    warm_templates,
)
from cote.mailproc.mailuser import MailUser
from cote.mailproc.pop3.maildrop import (
    Maildrop,
    Pop3Settings,
    SessionLocked,
    UidlFormatError,
)
from cote.mailproc.pop3.server import refuse_locked, serve
from cote.storage import StorageError
from cote.storage.namespaces import Namespaces
from cote.variables import user_values


def _serve_maildrop(cfg: Config, user: MailUser, client: socket.socket,
                    request: HandoffRequest, log: Logger, *,
                    settings: Pop3Settings | None = None) -> int:
    """``settings``: read from ``cfg`` by the master before the fork (``prepare``)."""
    settings = settings or Pop3Settings.from_config(cfg)
    mailboxes: Namespaces | None = None
    try:
        mailboxes = Namespaces.from_config(cfg, user.fields, user=user.user,
                                           mail_location=user.mail_location, home=user.home,
                                           service="pop3")
        with mailboxes.open("INBOX") as inbox, Maildrop(inbox, settings, synced=True) as maildrop:
            serve(Channel(client), maildrop, log, pipelined=request.pipelined,
                  user_vars=session_vars(user, request))
    except SessionLocked:
        refuse_locked(client.sendall, settings, log)
        return 1
    except UidlFormatError as e:
        log.error(str(e))
        client.sendall(b"-ERR [SYS/PERM] Invalid pop3_uidl_format setting\r\n")
        return 1
    except StorageError as e:
        log.error(f"Couldn't open INBOX: {e}")
        client.sendall(b"-ERR [SYS/TEMP] Couldn't open INBOX\r\n")
        return 1
    finally:
        # (the index's connection too: the process may serve another session next)
        if mailboxes is not None:
            mailboxes.close()
        client.close()
    return 0


def session_vars(user: MailUser, request: HandoffRequest) -> dict[str, str | None]:
    """The mail user's variables for the logout line (Dovecot's mail_user table)."""
    values = user_values(user.user)
    values.update(home=user.home, service="pop3", local_ip=request.local_ip,
                  remote_ip=request.remote_ip, session=request.session,
                  pid=str(os.getpid()), uid=str(user.uid), gid=str(user.gid))
    return values


def prepare(config: Config) -> dict[str, Any]:
    """In the master, before forking: see ``prepare_service``; also the UIDL template."""
    extra = prepare_service(config, "pop3", Pop3Settings.from_config)
    settings = extra.get("mail_settings")
    if isinstance(settings, Pop3Settings):
        warm_templates([settings.uidl_format])
    return extra


def run(ctx: ServiceContext) -> int:
    settings = prepared_settings(ctx, Pop3Settings)

    def serve_maildrop(cfg: Config, user: MailUser, client: socket.socket,
                       request: HandoffRequest, log: Logger) -> int:
        return _serve_maildrop(cfg, user, client, request, log, settings=settings)

    return run_service(ctx, "pop3", serve_maildrop,
                       failure_reason="Internal error occurred. Refer to server log for more "
                                      "information.",
                       failure_line=b"-ERR [SYS/TEMP] Internal error occurred.\r\n")
