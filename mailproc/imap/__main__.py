"""Serve one already-authenticated IMAP session (PREAUTH) on stdin/stdout (a socket or pipes).

Like running Dovecot's ``imap`` binary for a user (``/usr/lib/dovecot/imap -u USER``): for
debugging a user's mail and for tests; the login hand-off (``service.py``) uses the same
session code. As root it drops to ``--uid``/``--gid`` before touching mail.

    python -m cote.mailproc.imap -u USER [-c dovecot.conf] [--mail LOCATION] [--home DIR]
                                 [--uid N --gid N]
"""

from __future__ import annotations

import argparse
import os
import socket
import stat
import sys

from cote.config import ConfigError, load
from cote.log import Logger
from cote.mailproc.channel import Channel
from cote.mailproc.pop3.__main__ import StderrLogger, drop_privileges
from cote.storage import MailboxList, StorageError, open_storage
from cote.storage.namespaces import Namespaces
from cote.variables import VariableError, expand, user_values

from .connection import Connection
from .server import serve
from .session import Session, autocreate
from .settings import ImapSettings

EX_CONFIG = 78
EX_TEMPFAIL = 75


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cote.mailproc.imap", description=__doc__)
    p.add_argument("-u", "--user", required=True)
    p.add_argument("-c", "--config", help="dovecot.conf (default: built-in defaults)")
    p.add_argument("--mail", help="mail_location (default: from the config)")
    p.add_argument("--home", help="the user's home (for ~ and %%h)")
    p.add_argument("--uid", type=int)
    p.add_argument("--gid", type=int)
    return p.parse_args(argv)


def run_stdio(session: Session, log: Logger) -> None:
    """Serve on fd 0 (input) and fd 1 (output): a socket, pipes, a tty or files."""
    if stat.S_ISSOCK(os.fstat(0).st_mode):
        serve(Channel(socket.socket(fileno=os.dup(0))), session, log)
        return
    serve(Channel(in_fd=0, out_fd=1), session, log)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = StderrLogger(f"imap({args.user})")
    try:
        cfg = load(args.config).lookup(protocol="imap") if args.config else None
        settings = ImapSettings.from_config(cfg) if cfg else ImapSettings()
        values = user_values(args.user)
        values["home"] = args.home
        template = args.mail or (str(cfg.get("mail_location")) if cfg else "")
        if not template:
            log.error("No mail_location given (--mail or the config's mail_location)")
            return EX_CONFIG
        location = expand(template, values)
    except (ConfigError, VariableError) as e:
        log.error(str(e))
        return EX_CONFIG
    drop_privileges(args.uid, args.gid)
    try:
        mailboxes: MailboxList
        if cfg is not None:  # namespaces and quota as the imap service opens them
            mailboxes = Namespaces.from_config(cfg, {}, user=args.user, mail_location=location,
                                               home=args.home, service="imap")
        else:
            mailboxes = open_storage(location, home=args.home)
        autocreate(mailboxes, settings)
    except StorageError as e:
        log.error(f"Couldn't open mail storage: {e}")
        sys.stdout.buffer.write(b"* BYE Internal error occurred. Refer to server log for "
                                b"more information.\r\n")
        return EX_TEMPFAIL
    max_line = cfg.get("imap_max_line_length") if cfg is not None else None
    conn = Connection(commands=settings.commands(),
                      max_line_length=int(max_line) if isinstance(max_line, int) else None)
    session = Session(mailboxes, conn, args.user, settings, log)
    run_stdio(session, log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
