"""The IMAP mail process's settings, read once from the config (Dovecot's names and defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from cote.config import Config

from .commands import MAIL_COMMANDS

QUOTA_COMMANDS = frozenset({"GETQUOTAROOT", "GETQUOTA", "SETQUOTA"})

DEFAULT_LOGOUT_FORMAT = ("in=%i out=%o deleted=%{deleted} expunged=%{expunged} "
                         "trashed=%{trashed} hdr_count=%{fetch_hdr_count} "
                         "hdr_bytes=%{fetch_hdr_bytes} body_count=%{fetch_body_count} "
                         "body_bytes=%{fetch_body_bytes}")

CAPABILITIES: tuple[str, ...] = (
                "IMAP4rev1", "SASL-IR", "LOGIN-REFERRALS", "ID", "ENABLE", "IDLE", "SORT",
                "SORT=DISPLAY", "THREAD=REFERENCES", "THREAD=REFS", "THREAD=ORDEREDSUBJECT",
                "MULTIAPPEND", "UNSELECT", "CHILDREN", "NAMESPACE", "UIDPLUS",
                "LIST-EXTENDED", "CONDSTORE", "QRESYNC", "ESEARCH", "ESORT",
                "SEARCHRES", "WITHIN", "LIST-STATUS", "BINARY", "MOVE", "STATUS=SIZE",
                "LITERAL+")
"""Dovecot 2.3's post-login capability list, in its order, without what cote does not
implement yet (URL-PARTIAL, CATENATE, I18NLEVEL=1, CONTEXT=SEARCH, SNIPPET=FUZZY,
PREVIEW=FUZZY, PREVIEW, SAVEDATE, NOTIFY): see docs/differences.md."""


@dataclass(frozen=True, slots=True)
class ImapSettings:
    capability: tuple[str, ...] = CAPABILITIES
    logout_format: str = DEFAULT_LOGOUT_FORMAT
    idle_notify_interval: float = 120.0
    separator: str | None = None
    special_use: tuple[tuple[str, str], ...] = ()
    """(mailbox, "\\Sent …") of the inbox namespace's ``mailbox`` sections."""
    auto: tuple[tuple[str, str], ...] = ()
    """(mailbox, "create" or "subscribe") for ``mailbox { auto = … }``."""
    quota: bool = False
    """Dovecot's ``imap_quota`` plugin is on: QUOTA capability and GETQUOTA* commands."""

    def commands(self) -> frozenset[str]:
        """The command names the connection accepts."""
        return MAIL_COMMANDS | QUOTA_COMMANDS if self.quota else MAIL_COMMANDS

    @classmethod
    def from_config(cls, cfg: Config) -> ImapSettings:
        caps = str(cfg.get("imap_capability") or "").split()
        if not caps:
            capability = CAPABILITIES
        elif caps[0].startswith("+"):
            capability = CAPABILITIES + tuple(c.lstrip("+") for c in caps)
        else:
            capability = tuple(caps)
        fmt = cfg.get("imap_logout_format")
        interval = _seconds(cfg.get("imap_idle_notify_interval"), 120.0)
        separator, special, auto = _inbox_namespace(cfg)
        quota = "imap_quota" in str(cfg.get("mail_plugins") or "").split()
        if special and not caps and "SPECIAL-USE" not in capability:
            capability = (*capability, "SPECIAL-USE")
        if quota and "QUOTA" not in capability:
            capability = (*capability, "QUOTA")
        return cls(capability, str(fmt) if fmt is not None else DEFAULT_LOGOUT_FORMAT,
                   interval, separator, special, auto, quota)


def _inbox_namespace(cfg: Config) -> tuple[str | None, tuple[tuple[str, str], ...],
                                           tuple[tuple[str, str], ...]]:
    """Separator, special-use and auto mailboxes of the namespace holding INBOX (cote
    serves the one personal namespace; others are listed in docs/differences.md)."""
    spaces = cfg.sections("namespace")
    chosen = next((ns for ns in spaces if str(ns.get("inbox")).lower() in ("yes", "true")),
                  spaces[0] if spaces else None)
    if chosen is None:
        return None, (), ()
    sep = str(chosen.get("separator") or "") or None
    special: list[tuple[str, str]] = []
    auto: list[tuple[str, str]] = []
    for mb in chosen.sections("mailbox"):
        use = str(mb.get("special_use") or "").strip()
        if use:
            special.append((mb.name, use))
        mode = str(mb.get("auto") or "no")
        if mode in ("create", "subscribe"):
            auto.append((mb.name, mode))
    return sep, tuple(special), tuple(auto)


def _seconds(value: object, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().lower()
    units = {"": 1, "s": 1, "sec": 1, "secs": 1, "m": 60, "min": 60, "mins": 60, "h": 3600}
    num = "".join(c for c in text if c.isdigit())
    unit = text[len(num):].strip()
    if not num or unit not in units:
        return default
    return float(int(num) * units[unit])
