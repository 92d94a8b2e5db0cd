"""Delivering one message to one user's INBOX, durably, as Dovecot's LMTP/LDA does.

The message is spooled once per transaction (LF line ends, as Dovecot stores with
``mail_save_crlf = no``); each recipient gets the trace headers Dovecot adds in front
(``Return-Path``, ``Delivered-To``, ``Received``) and an append through the storage layer, which
writes to ``tmp/``, fsyncs per ``mail_fsync``, renames and updates the uidlist under its lock —
so the LMTP OK is only said for mail that is on disk. The append runs with the user's effective
uid/gid, so a root LMTP process never leaves root-owned files in a user's Maildir.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cote.config import Config
from cote.mailproc.lmtp.journal import (
    Journal,
    delivery_key,
    open_journal,
    pending_base,
    transaction_id,
)
from cote.mailproc.mailuser import MailUser
from cote.storage import StorageError
from cote.storage.api import Mailbox
from cote.storage.message.headers import read_header
from cote.storage.message.lineends import SaveLineEnds
from cote.storage.message.searchkeys import decode_words
from cote.storage.namespaces import Namespaces

SPOOL_IN_MEMORY = 1024 * 1024
# Failures to open the wanted mailbox after which Dovecot saves to INBOX instead.
FALLBACK_CODES = frozenset({"CANNOT", "NONEXISTENT", "ALREADYEXISTS", "NOPERM"})


class Spool:
    """The transaction's message, with line ends as Dovecot's Maildir save writes them
    (CRLF → LF, a lone CR kept, a CR at the very end dropped), chunk splits included."""

    def __init__(self) -> None:
        self.file = tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY)  # noqa: SIM115
        self._line_ends = SaveLineEnds()
        self.size = 0
        self.lines = 0  # LF count: the CRLF (virtual) size is size + lines
        self.digest = hashlib.sha256()  # of the stored bytes, for the delivery journal

    def write(self, data: bytes) -> None:
        out = self._line_ends.feed(data)
        self.file.write(out)
        self.digest.update(out)
        self.size += len(out)
        self.lines += out.count(b"\n")

    def finish(self) -> None:
        out = self._line_ends.finish()
        self.file.write(out)
        self.digest.update(out)
        self.size += len(out)
        self.lines += out.count(b"\n")

    def header_fields(self) -> list[tuple[bytes, bytes]]:
        self.file.seek(0)
        head = self.file.read(64 * 1024)
        fields, _, _ = read_header(head, 0, len(head))
        return fields

    def close(self) -> None:
        self.file.close()


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str  # "" for the null reverse path
    client_name: str  # LHLO argument
    client_ip: str
    hostname: str  # our name in the Received header


def trace_headers(env: Envelope, trace_id: str, *, delivered_to: str | None,
                  for_address: str | None, add_received: bool = True,
                  now: float | None = None) -> bytes:
    """Dovecot's trace headers. For a transaction with several recipients both addresses are
    None: as in Dovecot, neither ``Delivered-To`` nor the ``for <…>`` clause names one of them
    (every recipient gets the same message), and ``trace_id`` is the transaction's id."""
    lines = [f"Return-Path: <{env.sender}>"]
    if delivered_to is not None:
        lines.append(f"Delivered-To: {delivered_to}")
    if add_received:
        date = email.utils.formatdate(now, localtime=True)
        lines += [f"Received: from {env.client_name} ([{env.client_ip}])",
                  f"\tby {env.hostname} with LMTP",
                  f"\tid {trace_id}"]
        if for_address is not None:
            lines += [f"\t(envelope-from <{env.sender}>)", f"\tfor <{for_address}>; {date}"]
        else:
            lines.append(f"\t(envelope-from <{env.sender}>); {date}")
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")


def user_mailboxes(cfg: Config, user: MailUser, service: str) -> Namespaces:
    """The user's namespaces as a delivery sees them (quota with the delivery grace)."""
    return Namespaces.from_config(cfg, user.fields, user=user.user,
                                  mail_location=user.mail_location, home=user.home,
                                  delivery=True, service=service)


def choose_mailbox(cfg: Config, user: MailUser, wanted: str,
                   note: Callable[[str], None], service: str = "lmtp") -> str:
    """The mailbox a delivery goes to: ``wanted`` if it exists (or may be created with
    ``lda_mailbox_autocreate``), else INBOX, as Dovecot's LDA and LMTP do (``note`` gets the
    log line for the fallback). A name the store refuses (``Auto/X`` with a ``.`` separator)
    falls back too; only a temporary failure is raised."""
    if wanted == "INBOX":
        return wanted
    with acting_as(user):
        mailboxes = user_mailboxes(cfg, user, service)
        try:
            if mailboxes.exists(wanted):
                return wanted
            if cfg.get("lda_mailbox_autocreate"):
                mailboxes.create(wanted)
                if cfg.get("lda_mailbox_autosubscribe"):
                    mailboxes.subscribe(wanted)
                return wanted
            reason = f"Mailbox doesn't exist: {wanted}"
        except StorageError as e:
            if e.code not in FALLBACK_CODES:
                raise
            reason = e.message
        finally:
            mailboxes.close()
    note(f"save failed to open mailbox {wanted}: {reason}")
    return "INBOX"


class _Joined:
    """A read-only stream: the trace headers, then the spooled message (the storage layer
    only calls ``read(n)`` on what it appends, so the message is never copied in memory)."""

    def __init__(self, head: bytes, body: tempfile.SpooledTemporaryFile[bytes]) -> None:
        self.head = head
        self.pos = 0
        self.body = body
        body.seek(0)

    def read(self, size: int = -1) -> bytes:
        if self.pos < len(self.head):
            end = len(self.head) if size < 0 else min(len(self.head), self.pos + size)
            out = self.head[self.pos:end]
            self.pos = end
            if size < 0:
                return out + self.body.read()
            if len(out) < size:
                out += self.body.read(size - len(out))
            return out
        return self.body.read(size)


@contextlib.contextmanager
def acting_as(user: MailUser) -> Iterator[None]:
    """Effective uid/gid of the user for the duration (only when running as root)."""
    if os.geteuid() != 0:
        yield
        return
    os.setgroups([user.gid])
    os.setegid(user.gid)
    os.seteuid(user.uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups([])


def journal_key(spool: Spool, sender: str, recipient: str) -> str | None:
    """The delivery journal's key for this transaction and recipient, or None when the
    client gave the transaction no identity (no ``id`` in the topmost Received header)."""
    txid = transaction_id(spool.header_fields())
    if txid is None:
        return None
    return delivery_key(recipient, sender, txid, spool.digest.digest())


def deliver(cfg: Config, user: MailUser, spool: Spool, head: bytes, mailbox: str = "INBOX", *,
            service: str = "lmtp", key: str | None = None) -> int | None:
    """Append to the user's mailbox; returns the new UID, or None when the journal shows that
    an earlier attempt of this transaction (``key``) already saved it. Raises StorageError
    (QuotaExceeded when the user's quota refuses it)."""
    with acting_as(user):
        mailboxes = user_mailboxes(cfg, user, service)
        try:
            with mailboxes.open_for_append(mailbox) as box:
                journal = open_journal(box, str(cfg.get("mail_fsync"))) if key else None
                return _append(box, _Joined(head, spool.file), journal, key)
        finally:
            mailboxes.close()


def _append(box: Mailbox, source: _Joined, journal: Journal | None, key: str | None
            ) -> int | None:
    if journal is None or key is None:
        return box.append(source, internal_date=time.time())  # type: ignore[arg-type]
    if journal.already_saved(key):
        return None
    with box.begin_append() as tx:
        tx.add(source, internal_date=time.time())  # type: ignore[arg-type]
        base = pending_base(tx)
        if base is not None:
            journal.record_pending(key, base)
        uid = tx.commit()[0]
    journal.mark_done(key)
    return uid


def over_quota(cfg: Config, user: MailUser) -> bool:
    """lmtp_rcpt_check_quota: is the user already over quota (refuse at RCPT)?"""
    with acting_as(user):
        mailboxes = user_mailboxes(cfg, user, "lmtp")
        try:
            return mailboxes.quota is not None and mailboxes.quota.is_over("INBOX")
        finally:
            mailboxes.close()


def _first(fields: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    return next((v for k, v in fields if k.lower() == name), None)


def _address(value: bytes | None) -> str:
    """The first address of a header (Dovecot logs ``%f`` as ``local@domain`` only)."""
    if value is None:
        return ""
    text = " ".join(value.decode("utf-8", "surrogateescape").split())
    return next((a for _, a in email.utils.getaddresses([text]) if a), "")


def log_values(spool: Spool, env: Envelope, message: str, head: bytes = b""
               ) -> dict[str, str | None]:
    """The ``deliver_log_format`` variables, short and long names (Dovecot 2.3's table;
    sizes are the stored message's, trace headers ``head`` included: LF line ends for ``%p``,
    CRLF for ``%w``)."""
    fields = spool.header_fields()
    msgid = _first(fields, b"message-id")
    subject = _first(fields, b"subject")
    values: dict[str, str | None] = {
        "msgid": msgid.decode("utf-8", "replace").strip() if msgid else "unspecified",
        "subject": decode_words(subject).strip() if subject else "",
        "from": _address(_first(fields, b"from")),
        "from_envelope": env.sender, "size": str(len(head) + spool.size),
        "vsize": str(len(head) + head.count(b"\n") + spool.size + spool.lines),
    }
    short = {"m": "msgid", "s": "subject", "f": "from", "e": "from_envelope", "p": "size",
             "w": "vsize"}
    values.update({k: values[v] for k, v in short.items()})
    values["$"] = message
    return values


__all__ = ["Envelope", "Spool", "StorageError", "deliver", "log_values", "trace_headers"]
