"""Modified UTF-7 (RFC 3501 §5.1.3): mailbox names on the IMAP wire and in Maildir++ folders.

Printable ASCII other than ``&`` stands for itself, ``&`` is ``&-``, and every other run of
characters is UTF-16BE in modified base64 (``,`` instead of ``/``, no padding) between ``&``
and ``-``.
"""

from __future__ import annotations

import base64
import binascii


class MUTF7Error(ValueError):
    """A name that is not valid modified UTF-7."""


def _is_direct(ch: str) -> bool:
    return 0x20 <= ord(ch) <= 0x7E


def encode(name: str) -> str:
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            b64 = base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")
            out.append(f"&{b64}-")
            pending.clear()

    for ch in name:
        if _is_direct(ch):
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def decode(name: str) -> str:
    out: list[str] = []
    i, n = 0, len(name)
    while i < n:
        ch = name[i]
        if not _is_direct(ch):
            raise MUTF7Error(f"8-bit or control character in mailbox name: {name!r}")
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = name.find("-", i + 1)
        if end < 0:
            raise MUTF7Error(f"unterminated &-sequence in mailbox name: {name!r}")
        chunk = name[i + 1 : end]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            try:
                raw = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
                text = raw.decode("utf-16-be")
            except (binascii.Error, UnicodeDecodeError, ValueError) as e:
                raise MUTF7Error(f"bad &-sequence in mailbox name: {name!r}") from e
            if len(raw) % 2 or any(_is_direct(c) for c in text) or encode(text)[1:-1] != chunk:
                # RFC 3501: printable ASCII must not be encoded; the encoding must be canonical.
                raise MUTF7Error(f"non-canonical &-sequence in mailbox name: {name!r}")
            out.append(text)
        i = end + 1
    return "".join(out)


def is_valid(name: str) -> bool:
    try:
        decode(name)
    except MUTF7Error:
        return False
    return True
