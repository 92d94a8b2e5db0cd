"""The ``subscriptions`` file in Dovecot's formats.

Version 2 (written): ``V<TAB>2<LF><LF>``, then one mailbox per line with its hierarchy levels
separated by TAB, each level tab-escaped (0x01 is the escape byte). Version 1 (read): one
name per line, levels separated by the list's on-disk separator.
"""

from __future__ import annotations

NAME = "subscriptions"
_ESC = {"\x01": "\x011", "\t": "\x01t", "\r": "\x01r", "\n": "\x01n"}
_UNESC = {"1": "\x01", "t": "\t", "r": "\r", "n": "\n", "0": "\x00"}


def escape(s: str) -> str:
    if not any(c in s for c in _ESC):
        return s
    return "".join(_ESC.get(c, c) for c in s)


def unescape(s: str) -> str:
    if "\x01" not in s:
        return s
    out: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\x01" and i + 1 < len(s):
            out.append(_UNESC.get(s[i + 1], s[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse(data: bytes, v1_separator: str) -> list[tuple[str, ...]]:
    """Subscribed names as tuples of hierarchy levels, in file order, without duplicates."""
    text = data.decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    out: list[tuple[str, ...]] = []
    if lines and lines[0] == "V\t2":
        body = lines[1:]
        names = [tuple(unescape(p) for p in line.split("\t")) for line in body if line]
    else:
        names = [tuple(line.split(v1_separator)) for line in lines if line]
    seen: set[tuple[str, ...]] = set()
    for name in names:
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def format(names: list[tuple[str, ...]]) -> bytes:
    body = "".join("\t".join(escape(p) for p in name) + "\n" for name in names)
    return ("V\t2\n\n" + body).encode("utf-8", "surrogateescape")
