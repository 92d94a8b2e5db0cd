"""Where a mailbox lives on disk: the Maildir++ and fs list layouts (storage-independent:
an mbox backend maps names the same way, with a file where Maildir has a directory).

Maildir++ (default): INBOX is the root; ``A/B`` is ``<root>/.A.B/`` (``.`` separates levels
on disk, whatever the namespace separator). fs: ``A/B`` is ``<root>/A/B/`` (INBOX is still the
root for Maildir, ``<root>/INBOX/<DIRNAME>`` with ``DIRNAME=``), with ``DIRNAME=`` naming the
subdirectory that holds ``cur/new/tmp``. Level
names are modified UTF-7 on disk unless the location has ``:UTF-8``. ``CONTROL=`` mirrors the
same relative paths for ``dovecot-uidlist``/``dovecot-keywords``.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod

from cote import mutf7
from cote.storage.errors import InvalidName
from cote.storage.location import MailLocation

INTERNAL = ("cur", "new", "tmp")
Parts = tuple[str, ...]


class Layout(ABC):
    default_separator: str
    disk_separator: str

    def __init__(self, loc: MailLocation) -> None:
        self.loc = loc
        self.root = loc.root

    def encode(self, part: str) -> str:
        if self.loc.utf8 or (part.isascii() and part.isprintable() and "&" not in part):
            return part  # printable ASCII without "&" is its own mUTF-7
        return mutf7.encode(part)

    def decode(self, part: str) -> str:
        if self.loc.utf8:
            return part
        try:
            return mutf7.decode(part)
        except mutf7.MUTF7Error:
            return part

    def is_inbox(self, parts: Parts) -> bool:
        return parts == ("INBOX",)

    @abstractmethod
    def relative(self, parts: Parts) -> str:
        """The mailbox's path below the root (``""`` for INBOX): also its index key."""

    #: whether ``DIRNAME=`` applies (it names the subdirectory holding cur/new/tmp)
    uses_dirname = False

    def inbox_dir(self) -> str:
        return self.root

    def mailbox_dir(self, parts: Parts) -> str:
        if self.is_inbox(parts):
            return self.loc.inbox or self.inbox_dir()
        return os.path.join(self.root, self.relative(parts))

    def mail_dir(self, parts: Parts) -> str:
        """The directory holding ``cur/ new/ tmp/``."""
        d = self.mailbox_dir(parts)
        if self.uses_dirname and self.loc.dirname and not (self.is_inbox(parts)
                                                          and self.loc.inbox):
            d = os.path.join(d, self.loc.dirname)
        return d

    def control_dir(self, parts: Parts) -> str:
        if self.loc.control is None:
            return self.mail_dir(parts)
        rel = self.relative(parts)
        return os.path.join(self.loc.control, rel) if rel else self.loc.control

    def validate(self, parts: Parts) -> None:
        for part in parts:
            if not part:
                raise InvalidName("Name has an empty hierarchy level")
            if "/" in part:
                raise InvalidName("Name must not have '/' characters")
            if part in (".", ".."):
                raise InvalidName("Name must not have '.' or '..' levels")
            if any(ord(c) < 32 for c in part):
                raise InvalidName("Name must not have control characters")

    @abstractmethod
    def scan(self) -> dict[Parts, bool]:
        """Every mailbox directory below the root (not INBOX): parts -> selectable."""

    def rename_map(self, old: Parts, new: Parts, existing: dict[Parts, bool]
                   ) -> list[tuple[str, str]]:
        """``(old path, new path)`` pairs (mailbox dirs) that a rename moves."""
        return [(os.path.join(self.root, self.relative(old)),
                 os.path.join(self.root, self.relative(new)))]


class MaildirPlusPlus(Layout):
    default_separator = "."
    disk_separator = "."

    def relative(self, parts: Parts) -> str:
        if self.is_inbox(parts):
            return ""
        return "." + ".".join(self.encode(p) for p in parts)

    def validate(self, parts: Parts) -> None:
        super().validate(parts)
        for part in parts:
            if "." in self.encode(part):
                raise InvalidName("Name must not have '.' characters")

    def scan(self) -> dict[Parts, bool]:
        out: dict[Parts, bool] = {}
        try:
            with os.scandir(self.root) as it:
                for e in it:
                    n = e.name
                    if len(n) < 2 or n[0] != "." or n == ".." or n.startswith(".."):
                        continue
                    if not e.is_dir():
                        continue
                    raw = n[1:].split(".")
                    if any(not p for p in raw):
                        continue
                    out[tuple(self.decode(p) for p in raw)] = True
        except FileNotFoundError:
            pass
        return out

    def rename_map(self, old: Parts, new: Parts, existing: dict[Parts, bool]
                   ) -> list[tuple[str, str]]:
        n = len(old)
        pairs = []
        for parts in existing:
            if parts[:n] == old:
                pairs.append((os.path.join(self.root, self.relative(parts)),
                              os.path.join(self.root, self.relative(new + parts[n:]))))
        return pairs


class FsLayout(Layout):
    default_separator = "/"
    disk_separator = "/"
    uses_dirname = True

    def inbox_dir(self) -> str:
        # Maildir keeps INBOX in the root, unless DIRNAME= makes it <root>/INBOX/<dirname>
        return os.path.join(self.root, "INBOX") if self.loc.dirname else self.root

    def relative(self, parts: Parts) -> str:
        if self.is_inbox(parts):
            return ""
        return os.path.join(*(self.encode(p) for p in parts))

    def validate(self, parts: Parts) -> None:
        super().validate(parts)
        if not self.loc.dirname and parts[-1] in INTERNAL:
            raise InvalidName(f"Name must not end in {parts[-1]}")

    def _selectable(self, path: str) -> bool:
        d = os.path.join(path, self.loc.dirname) if self.loc.dirname else path
        return os.path.isdir(os.path.join(d, "cur"))

    def scan(self) -> dict[Parts, bool]:
        out: dict[Parts, bool] = {}
        skip = {*INTERNAL, self.loc.dirname} if self.loc.dirname else set(INTERNAL)

        def walk(path: str, prefix: Parts, top: bool) -> None:
            try:
                it = os.scandir(path)
            except (FileNotFoundError, NotADirectoryError):
                return
            with it:
                for e in it:
                    n = e.name
                    if n[0] == "." or (n in skip) or not e.is_dir():
                        continue
                    if top and n in INTERNAL:
                        continue
                    parts = (*prefix, self.decode(n))
                    out[parts] = self._selectable(e.path)
                    walk(e.path, parts, False)

        walk(self.root, (), True)
        return out


def layout_for(loc: MailLocation) -> Layout:
    return FsLayout(loc) if loc.layout == "fs" else MaildirPlusPlus(loc)
