"""``mail_location`` strings: ``<driver>:<root>[:KEY=value…][:FLAG]``.

``maildir:~/Maildir:INDEX=/var/idx/%u:CONTROL=…:LAYOUT=fs:DIRNAME=…:UTF-8``. ``%`` variables
arrive already expanded; ``~`` is the user's home. ``::`` stands for a literal ``:`` in a
value. Keys cote does not use yet are kept in ``extra`` (mbox's ``INBOX=`` is in ``inbox``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from cote.storage.errors import StorageError

DRIVERS = ("maildir", "mbox")
LAYOUTS = ("maildir++", "fs")


class LocationError(StorageError):
    def __init__(self, message: str) -> None:
        super().__init__(f"mail_location: {message}", code="SERVERBUG")


@dataclass(frozen=True, slots=True)
class MailLocation:
    driver: str
    root: str
    index: str | None = None
    control: str | None = None
    inbox: str | None = None
    layout: str = "maildir++"
    dirname: str = ""
    utf8: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def index_root(self) -> str:
        """Where cote's own index lives (``INDEX=`` or else the mail root)."""
        return self.index or self.root

    @property
    def control_root(self) -> str:
        return self.control or self.root


def _split(value: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == ":":
            if i + 1 < len(value) and value[i + 1] == ":":
                cur.append(":")
                i += 2
                continue
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _expand_home(path: str, home: str | None) -> str:
    if path == "~" or path.startswith("~/"):
        if not home:
            raise LocationError(f"{path!r} uses ~ but the user has no home directory")
        return home.rstrip("/") + path[1:]
    return path


def parse_location(value: str, home: str | None = None) -> MailLocation:
    """Parse a ``mail_location`` value whose ``%`` variables are already expanded."""
    parts = _split(value.strip())
    driver = parts[0].lower()
    if driver not in DRIVERS or len(parts) < 2 or not parts[1]:
        raise LocationError(f"unsupported or incomplete location {value!r} "
                            f"(expected maildir:<path> or mbox:<path>)")
    root = _expand_home(parts[1], home).rstrip("/") or "/"
    opts: dict[str, str] = {}
    utf8 = False
    for opt in parts[2:]:
        if not opt:
            continue
        key, sep, val = opt.partition("=")
        key = key.upper()
        if not sep:
            if key == "UTF-8":
                utf8 = True
            else:
                opts[key] = ""
            continue
        paths = ("INDEX", "CONTROL", "INBOX", "INDEXPVT")
        opts[key] = _expand_home(val, home) if key in paths else val
    layout = opts.pop("LAYOUT", "maildir++").lower()
    if layout not in LAYOUTS:
        raise LocationError(f"unsupported LAYOUT={layout} (maildir++ or fs)")
    index = opts.pop("INDEX", None)
    if index == "MEMORY":
        index = None
    return MailLocation(
        driver=driver, root=root, index=index and os.path.normpath(index),
        control=(c := opts.pop("CONTROL", None)) and os.path.normpath(c),
        inbox=(i := opts.pop("INBOX", None)) and os.path.normpath(i),
        layout=layout, dirname=opts.pop("DIRNAME", ""), utf8=utf8, extra=opts)
