"""``cote-lda``: deliver one message from stdin, a drop-in for ``dovecot-lda``.

For MTAs that run a program per delivery (Postfix ``mailbox_command``, ``procmail``-style
setups, the quota-warning script). Options and exit codes are dovecot-lda's: sendmail's
``EX_NOUSER`` (67) for an unknown user, ``EX_TEMPFAIL`` (75) when the delivery should be retried,
``EX_NOPERM`` (77) for a rejection with ``-e``. Like dovecot-lda it adds no headers of its own
(the MTA writes Return-Path/Delivered-To), and a ``-m`` mailbox that does not exist falls back
to INBOX unless ``lda_mailbox_autocreate`` is set.
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys
import tempfile

from cote.config import DEFAULT_PATH, Config, ConfigError, load
from cote.log import LEVEL_LETTER, LEVELS, Logger, mail_log_prefix
from cote.mailproc.lmtp import rejection
from cote.mailproc.lmtp.delivery import (
    Envelope,
    Spool,
    choose_mailbox,
    deliver,
    journal_key,
    log_values,
)
from cote.mailproc.lmtp.service import new_session_id
from cote.mailproc.mailuser import MailUser, MailUserError, drop_privileges, resolve
from cote.mailproc.userdb import UserdbError, UserNotFound, lookup_user
from cote.master.logservice import LogSink, LogTargets
from cote.storage import MailboxNotFound, QuotaExceeded, StorageError
from cote.variables import VariableError, compile_template

EX_USAGE, EX_NOUSER, EX_SOFTWARE, EX_TEMPFAIL, EX_NOPERM, EX_CONFIG = 64, 67, 70, 75, 77, 78
READ_CHUNK = 65536


class SinkLogger(Logger):
    """Writes straight to log_path/syslog: cote-lda runs without the master's log service."""

    def __init__(self, prefix: str, sink: LogSink) -> None:
        super().__init__(prefix)
        self.sink = sink

    def with_prefix(self, prefix: str) -> Logger:
        return SinkLogger(prefix, self.sink)

    def write(self, level: str, text: str) -> None:
        self.sink.write(LEVELS.get(LEVEL_LETTER.get(level, level), level), self.prefix, text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="cote-lda", description="Deliver a message from stdin.")
    p.add_argument("-c", dest="config", default=DEFAULT_PATH)
    p.add_argument("-d", dest="user", help="destination user (looked up in userdb)")
    p.add_argument("-a", dest="address", help="original recipient address")
    p.add_argument("-r", dest="final_address", help="final recipient address")
    p.add_argument("-f", dest="sender", default=None, help="envelope sender")
    p.add_argument("-m", dest="mailbox", default="INBOX")
    p.add_argument("-p", dest="path", help="read the message from this file, not stdin")
    p.add_argument("-e", dest="errors_to_stderr", action="store_true",
                   help="rejections: reason on stderr and exit 77 instead of a bounce")
    p.add_argument("-k", dest="keep_env", action="store_true", help="keep the environment")
    p.add_argument("-o", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return p.parse_args(argv)


def load_with_overrides(path: str, overrides: list[str]) -> Config:
    """``-o key=value`` / ``-o section/key=value``: settings applied after the config file."""
    if not overrides:
        return load(path)
    lines = [f"!include {os.path.abspath(path)}"]
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"-o {item}: expected key=value")
        *sections, name = key.split("/")
        lines += [f"{section} {{" for section in sections]
        lines.append(f"{name} = {value}")
        lines += ["}"] * len(sections)
    with tempfile.NamedTemporaryFile("w", suffix=".conf", prefix="cote-lda-") as f:
        f.write("\n".join(lines) + "\n")
        f.flush()
        return load(f.name)


def read_message(path: str | None) -> Spool:
    spool = Spool()
    with open(path, "rb") if path else os.fdopen(os.dup(0), "rb") as src:
        while chunk := src.read(READ_CHUNK):
            spool.write(chunk)
    spool.finish()
    # An mbox-style "From " line from the MTA is not part of the message.
    spool.file.seek(0)
    first = spool.file.readline()
    if first.startswith(b"From "):
        rest = spool.file.read()
        spool.close()
        spool = Spool()
        spool.write(rest)
        spool.finish()
    return spool


def find_user(cfg: Config, args: argparse.Namespace) -> MailUser:
    if args.user:
        socket_path = os.path.join(str(cfg.get("base_dir")), str(cfg.get("auth_socket_path")))
        reply = lookup_user(socket_path, args.user, {"service": "lda"})
        return resolve(cfg, reply.user, reply.fields, "lda")
    pw = pwd.getpwuid(os.getuid())
    return resolve(cfg, pw.pw_name, {"uid": str(pw.pw_uid), "gid": str(pw.pw_gid),
                                     "home": pw.pw_dir}, "lda")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_with_overrides(args.config, args.overrides).lookup(protocol="lda")
    except ConfigError as e:
        print(f"cote-lda: {e}", file=sys.stderr)
        return EX_CONFIG
    sink = LogSink(LogTargets(str(cfg.get("log_path")), str(cfg.get("info_log_path")),
                              str(cfg.get("debug_log_path")), str(cfg.get("syslog_facility")),
                              str(cfg.get("log_timestamp")).strip('"')))
    sink.open()  # as root if started as root: the log stays writable after the drop
    log: Logger = SinkLogger("lda: ", sink)
    try:
        spool = read_message(args.path)
    except OSError as e:
        log.error(f"Can't read the message: {e}")
        return EX_TEMPFAIL
    try:
        user = find_user(cfg, args)
    except UserNotFound:
        return EX_NOUSER
    except (UserdbError, MailUserError) as e:
        log.error(str(e))
        return EX_TEMPFAIL
    log = log.with_prefix(mail_log_prefix(cfg, {"service": "lda", "user": user.user,
                                                "pid": str(os.getpid()),
                                                "session": new_session_id()}))
    try:
        return _deliver(cfg, args, user, spool, log)
    finally:
        spool.close()


def _deliver(cfg: Config, args: argparse.Namespace, user: MailUser, spool: Spool,
             log: Logger) -> int:
    env = Envelope(args.sender or "", "", "", "")
    try:
        drop_privileges(user, cfg)
        mailbox = choose_mailbox(cfg, user, args.mailbox,
                                 lambda text: log.info(_line(cfg, spool, env, text)), "lda")
        key = journal_key(spool, env.sender, args.address or args.final_address or user.user)
        uid = deliver(cfg, user, spool, b"", mailbox, service="lda", key=key)
    except QuotaExceeded as e:
        log.info(_line(cfg, spool, env, f"save failed to {args.mailbox}: {e}"))
        if cfg.get("quota_full_tempfail"):
            return EX_TEMPFAIL
        return _reject(cfg, args, user, spool, env=env, reason=str(e), log=log)
    except (StorageError, MailboxNotFound, MailUserError, OSError) as e:
        log.error(_line(cfg, spool, env, f"save failed to {args.mailbox}: {e}"))
        if args.errors_to_stderr:
            print("Internal error occurred. Refer to server log for more information.",
                  file=sys.stderr)
        return EX_TEMPFAIL
    if uid is None:
        log.info(_line(cfg, spool, env, f"already saved to {mailbox} by an earlier attempt of "
                                        "this transaction (delivery journal), not saved again"))
    else:
        log.info(_line(cfg, spool, env, f"saved mail to {mailbox}"))
    return 0


def _reject(cfg: Config, args: argparse.Namespace, user: MailUser, spool: Spool, *,
            env: Envelope, reason: str, log: Logger) -> int:
    """A refused message: the reason on stderr with ``-e`` (exit 77), else a rejection mail
    to the sender and exit 0, as dovecot-lda."""
    log.info(_line(cfg, spool, env, f"rejected: {reason}"))
    if args.errors_to_stderr:
        print(reason, file=sys.stderr)
        return EX_NOPERM
    fields = spool.header_fields()
    sender = env.sender or _return_path(fields)
    if not sender:
        return 0  # nowhere to send it: the message is dropped, as by dovecot-lda
    if rejection.auto_submitted(fields):
        log.info(_line(cfg, spool, env, "Auto-submitted message discarded: rejection not sent"))
        return 0
    spool.file.seek(0)
    head = spool.file.read(64 * 1024).split(b"\n\n", 1)[0] + b"\n"
    subject = next((v for k, v in fields if k == b"subject"), b"")
    rcpt = args.address or args.final_address or rejection.recipient_address(cfg, user.user)
    r = rejection.Rejection(sender, rcpt, user.user, reason)
    message = rejection.build(cfg, r, head, subject.decode("utf-8", "replace"))
    if not rejection.send(cfg, r, message):
        log.error(_line(cfg, spool, env, f"Couldn't send rejection to {sender}"))
        return EX_TEMPFAIL
    return 0


def _return_path(fields: list[tuple[bytes, bytes]]) -> str:
    value = next((v for k, v in fields if k == b"return-path"), b"").decode("utf-8", "replace")
    return value.strip().strip("<>")


def _line(cfg: Config, spool: Spool, env: Envelope, message: str) -> str:
    try:
        return compile_template(str(cfg.get("deliver_log_format"))).expand(
            log_values(spool, env, message))
    except (VariableError, ValueError):
        return message


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["main"]
