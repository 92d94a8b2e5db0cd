"""A user's POP3 maildrop: the INBOX as POP3 sees it, and the UPDATE state's commit.

POP3 numbers the messages of INBOX as they were at login; sizes are RFC822.SIZE (CRLF), UIDLs
come from ``pop3_uidl_format`` and are computed once per session. At QUIT the deletions become
expunges (or a flag, with ``pop3_deleted_flag``) and RETRieved messages get ``\\Seen`` — in one
step, after the client asked for it, never on a dropped connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from cote.config import Config
from cote.mailproc.pop3.session import Pop3Session
from cote.storage import Mailbox
from cote.storage import flags as F
from cote.variables import VariableError, compile_template

DEFAULT_UIDL_FORMAT = "%08Xu%08Xv"
DEFAULT_LOGOUT_FORMAT = "top=%t/%p, retr=%r/%b, del=%d/%m, size=%s"
# pop3_uidl_format variables cote can compute from the storage interface today.
UIDL_VARIABLES = {"u": "uid", "v": "uidvalidity"}


class UidlFormatError(ValueError):
    """pop3_uidl_format names a variable cote cannot provide (yet)."""


@dataclass(frozen=True, slots=True)
class Pop3Settings:
    uidl_format: str = DEFAULT_UIDL_FORMAT
    delete_type: str = "default"  # default | expunge | flag
    deleted_flag: str = ""
    no_flag_updates: bool = False
    enable_last: bool = False
    logout_format: str = DEFAULT_LOGOUT_FORMAT
    workarounds: frozenset[str] = frozenset()  # pop3_client_workarounds

    @classmethod
    def from_config(cls, cfg: Config) -> Pop3Settings:
        view = cfg.lookup(protocol="pop3")
        return cls(
            uidl_format=str(view.get("pop3_uidl_format")),
            delete_type=str(view.get("pop3_delete_type")),
            deleted_flag=str(view.get("pop3_deleted_flag")),
            no_flag_updates=bool(view.get("pop3_no_flag_updates")),
            enable_last=bool(view.get("pop3_enable_last")),
            logout_format=str(view.get("pop3_logout_format")),
            workarounds=frozenset(str(view.get("pop3_client_workarounds")).split()),
        )

    @property
    def flag_deletes(self) -> bool:
        """Dovecot: ``default`` flags when pop3_deleted_flag is set, else expunges."""
        if self.delete_type == "flag":
            return True
        return self.delete_type == "default" and bool(self.deleted_flag)


class Maildrop:
    def __init__(self, mailbox: Mailbox, settings: Pop3Settings) -> None:
        self.mailbox = mailbox
        self.settings = settings
        mailbox.sync()
        uids = list(mailbox.uids)
        hidden = 0
        if settings.deleted_flag:  # messages POP3 already "deleted" stay hidden
            bit = self._flag_bit(settings.deleted_flag)
            keep = [i for i, fl in enumerate(mailbox.flags) if not fl & bit]
            hidden = len(uids) - len(keep)
            uids = [uids[i] for i in keep]
        self.uids = uids
        self.hidden = hidden
        details = mailbox.details(uids)
        self.sizes = [d.vsize for d in details]
        # UIDLs kept from a migration (dovecot-uidlist's P field) win over the format.
        migrated = mailbox.pop3_uidls(uids)
        formatted = self._uidls([u for u in uids if u not in migrated], mailbox.uidvalidity)
        rest = iter(formatted)
        self.uidls = [migrated[u] if u in migrated else next(rest) for u in uids]

    def _uidls(self, uids: Sequence[int], uidvalidity: int) -> list[str]:
        try:
            template = compile_template(self.settings.uidl_format)
        except VariableError as e:
            raise UidlFormatError(f"pop3_uidl_format: {e}") from e
        out = []
        validity = str(uidvalidity)
        for uid in uids:
            try:
                out.append(template.expand({"u": str(uid), "uid": str(uid), "v": validity,
                                            "uidvalidity": validity}))
            except VariableError as e:
                known = ", ".join(f"%{k}" for k in UIDL_VARIABLES)
                raise UidlFormatError(
                    f"pop3_uidl_format: {e} (cote supports {known} so far)") from e
        return out

    def session(self) -> Pop3Session:
        return Pop3Session(self.sizes, self.uidls, enable_last=self.settings.enable_last)

    def open(self, index: int) -> BinaryIO:
        return self.mailbox.open_message(self.uids[index])

    def commit(self, session: Pop3Session) -> int:
        """The UPDATE state: apply deletions and \\Seen; returns how many were expunged."""
        deleted = [self.uids[i] for i in sorted(session.deleted)]
        if not self.settings.no_flag_updates:
            seen = [self.uids[i] for i in sorted(session.seen - session.deleted)]
            if seen:
                self.mailbox.store(seen, "+", ["\\Seen"])
        if not deleted:
            return 0
        if self.settings.flag_deletes:
            self.mailbox.store(deleted, "+", [self.settings.deleted_flag])
            return 0
        self.mailbox.store(deleted, "+", ["\\Deleted"])
        return len(self.mailbox.expunge(deleted))

    def logout_values(self, session: Pop3Session, bytes_in: int, bytes_out: int) -> dict[str, str]:
        s = session.stats
        values = {
            "i": bytes_in, "o": bytes_out, "t": s.top_count, "p": s.top_bytes,
            "r": s.retr_count, "b": s.retr_bytes, "d": s.deleted_count,
            "m": len(self.sizes), "s": session.total_size, "u": self.mailbox.uidvalidity,
        }
        long_names = {"i": "input", "o": "output", "t": "top_count", "p": "top_bytes",
                      "r": "retr_count", "b": "retr_bytes", "d": "deleted_count",
                      "m": "message_count", "s": "message_bytes", "u": "uidvalidity"}
        out = {k: str(v) for k, v in values.items()}
        out.update({long_names[k]: str(v) for k, v in values.items()})
        out["deleted_bytes"] = str(s.deleted_bytes)
        out["expunged"] = str(s.expunged)
        return out

    def _flag_bit(self, name: str) -> int:
        bit = F.system_bit(name)
        if bit is not None:
            return bit
        try:
            return F.keyword_bit(self.mailbox.keywords.index(name))
        except ValueError:
            return 0  # a keyword nobody set yet: no message carries it
