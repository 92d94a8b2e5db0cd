"""SMTP paths and parameters in MAIL FROM / RCPT TO, parsed the way Dovecot 2.3's LMTP does.

Dovecot is deliberately lenient about the address itself (it accepts ``a@``, ``a..b@c``,
8-bit local parts and source routes) and strict about the framing around it; the error texts
are its own.
"""

from __future__ import annotations

from dataclasses import dataclass


class PathError(ValueError):
    """The reason text, e.g. ``Missing '>' at end of path``."""


@dataclass(frozen=True, slots=True)
class Address:
    localpart: str
    domain: str | None

    def __str__(self) -> str:
        return self.localpart if self.domain is None else f"{self.localpart}@{self.domain}"


def _unquote_localpart(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        out, i = [], 1
        while i < len(text) - 1:
            if text[i] == "\\" and i + 1 < len(text) - 1:
                i += 1
            out.append(text[i])
            i += 1
        return "".join(out)
    return text


def parse_path(text: str, *, allow_null: bool,
               allow_empty_domain: bool = False) -> tuple[Address | None, str]:
    """Parse ``<path>`` at the start of ``text``; returns (address or None for <>, rest).

    MAIL FROM is parsed with ``allow_null`` and ``allow_empty_domain`` (Dovecot takes a
    reverse path ``<a@>``); RCPT TO with neither.
    """
    if not text:
        raise PathError("Path is empty string")
    if text[0] in " \t":
        raise PathError("Unexpected whitespace before path")
    if text[0] != "<":
        raise PathError("Missing '<' at beginning of path")
    end = _find_path_end(text)
    if end < 0:
        raise PathError("Missing '>' at end of path")
    inner, rest = text[1:end], text[end + 1 :]
    if not inner:
        if not allow_null:
            raise PathError("Null path not allowed")
        return None, rest
    if inner.startswith("@"):  # a source route "@a,@b:" is accepted and ignored
        colon = inner.find(":")
        if colon < 0:
            raise PathError("Missing ':' after source route")
        inner = inner[colon + 1 :]
    local, at, domain = _split_address(inner)
    if not local:
        raise PathError("Empty localpart")
    if not local.startswith('"') and any(c in ' \t"(),:;<>[\\]' for c in local):
        raise PathError("Invalid character in localpart")
    if at and not domain and not allow_empty_domain:
        raise PathError("Missing domain after '@'")
    return Address(_unquote_localpart(local), domain if at else None), rest


def _find_path_end(text: str) -> int:
    quoted = False
    i = 1
    while i < len(text):
        c = text[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == ">":
            return i
        i += 1
    return -1


def _split_address(inner: str) -> tuple[str, str, str]:
    """(localpart as written, "@" or "", domain); a quoted localpart may contain '@'."""
    if inner.startswith('"'):
        i = 1
        while i < len(inner) and inner[i] != '"':
            i += 2 if inner[i] == "\\" else 1
        local, rest = inner[: i + 1], inner[i + 1 :]
        return (local, "@", rest[1:]) if rest.startswith("@") else (local, "", "")
    local, at, domain = inner.rpartition("@")
    return (local, at, domain) if at else (inner, "", "")


def parse_params(text: str) -> list[tuple[str, str | None]]:
    """ESMTP parameters after the path: `` KEY[=VALUE]`` separated by single spaces."""
    if not text:
        return []
    if not text.startswith(" "):
        raise PathError("Invalid character after path")
    params: list[tuple[str, str | None]] = []
    for word in text[1:].split(" "):
        if not word:
            raise PathError("Parameter is empty")
        key, eq, value = word.partition("=")
        params.append((key.upper(), value if eq else None))
    return params
