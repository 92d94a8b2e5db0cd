"""Serve one already-authenticated POP3 session on stdin/stdout (a socket or pipes).

Like running Dovecot's ``pop3`` binary for a user (``doveadm exec pop3 -u USER``): useful for
debugging a user's maildrop and for tests; the login hand-off uses the same code. As root it
drops to ``--uid``/``--gid`` before touching mail.

    python -m cote.mailproc.pop3 -u USER [-c dovecot.conf] [--mail LOCATION] [--home DIR]
                                 [--uid N --gid N]
"""

from __future__ import annotations

import argparse
import os
import socket
import stat
import sys

from cote.config import ConfigError, load
from cote.log import LEVEL_LETTER, LEVELS, Logger
from cote.mailproc.channel import Channel
from cote.mailproc.pop3.maildrop import Maildrop, Pop3Settings, SessionLocked, UidlFormatError
from cote.mailproc.pop3.server import refuse_locked, serve
from cote.storage import StorageError, open_storage
from cote.variables import VariableError, expand, user_values

EX_USAGE = 64
EX_CONFIG = 78
EX_TEMPFAIL = 75


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cote.mailproc.pop3", description=__doc__)
    p.add_argument("-u", "--user", required=True)
    p.add_argument("-c", "--config", help="dovecot.conf (default: built-in defaults)")
    p.add_argument("--mail", help="mail_location (default: from the config)")
    p.add_argument("--home", help="the user's home (for ~ and %%h)")
    p.add_argument("--uid", type=int)
    p.add_argument("--gid", type=int)
    return p.parse_args(argv)


class StderrLogger(Logger):
    """Plain ``prefix: Level: text`` lines on stderr: there is no master log service here."""

    def write(self, level: str, text: str) -> None:
        name = LEVELS.get(LEVEL_LETTER.get(level, level), level)
        try:
            os.write(self.fd, f"{self.prefix}: {name}: {text}\n".encode("utf-8", "replace"))
        except OSError:
            pass


def drop_privileges(uid: int | None, gid: int | None) -> None:
    if gid is not None:
        os.setgroups([])
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)


def run_stdio(maildrop: Maildrop, log: Logger, user_vars: dict[str, str | None]) -> None:
    """Serve on fd 0 (input) and fd 1 (output): a socket or pipes."""
    if stat.S_ISSOCK(os.fstat(0).st_mode):
        chan = Channel(socket.socket(fileno=os.dup(0)))
    else:
        chan = Channel(in_fd=0, out_fd=1)
    serve(chan, maildrop, log, user_vars=user_vars)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = StderrLogger(f"pop3({args.user})")
    try:
        cfg = load(args.config) if args.config else None
        settings = Pop3Settings.from_config(cfg) if cfg else Pop3Settings()
        values = user_values(args.user)
        values["home"] = args.home
        template = args.mail or (str(cfg.lookup(protocol="pop3").get("mail_location"))
                                 if cfg else "")
        if not template:
            log.error("No mail_location given (--mail or the config's mail_location)")
            return EX_CONFIG
        location = expand(template, values)
    except (ConfigError, VariableError) as e:
        log.error(str(e))
        return EX_CONFIG
    drop_privileges(args.uid, args.gid)
    try:
        mailboxes = open_storage(location, home=args.home)
        with mailboxes.open("INBOX") as inbox, Maildrop(inbox, settings, synced=True) as maildrop:
            user_vars = dict(values, service="pop3", pid=str(os.getpid()))
            run_stdio(maildrop, log, user_vars)
    except SessionLocked:
        refuse_locked(sys.stdout.buffer.write, settings, log)
        sys.stdout.buffer.flush()
        return EX_TEMPFAIL
    except UidlFormatError as e:
        log.error(str(e))
        sys.stdout.buffer.write(b"-ERR [SYS/PERM] Invalid pop3_uidl_format setting\r\n")
        return EX_CONFIG
    except StorageError as e:
        log.error(f"Couldn't open INBOX: {e}")
        sys.stdout.buffer.write(b"-ERR [SYS/TEMP] Couldn't open INBOX\r\n")
        return EX_TEMPFAIL
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
