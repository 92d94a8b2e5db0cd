"""The message corpus: hand-written tricky messages (corpus/*.eml) plus generated large ones."""

from __future__ import annotations

import base64
import random
from pathlib import Path

CORPUS_DIR = Path(__file__).parent / "corpus"


def thousand_parts() -> bytes:
    """A multipart/mixed with 1,000 small parts of varied types and encodings."""
    rng = random.Random(1000)
    out = [b"From: gen@example.com\r\nSubject: 1000 parts\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=\"=_thousand\"\r\n\r\npreamble\r\n"]
    for i in range(1000):
        kind = i % 4
        out.append(b"--=_thousand\r\n")
        if kind == 0:
            out.append(b"Content-Type: text/plain; charset=utf-8\r\n\r\npart %d\r\n" % i)
        elif kind == 1:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
            out.append(b"Content-Type: application/octet-stream; name=\"p%d.bin\"\r\n"
                       b"Content-Transfer-Encoding: base64\r\n\r\n" % i
                       + base64.encodebytes(data).replace(b"\n", b"\r\n"))
        elif kind == 2:
            out.append(b"Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable"
                       b"\r\n\r\n<p>=C3=A9 %d</p>=\r\n\r\n" % i)
        else:
            out.append(b"\r\n")  # empty header, empty body
    out.append(b"--=_thousand--\r\nepilogue\r\n")
    return b"".join(out)


def big_attachment(size: int = 5 * 1024 * 1024) -> bytes:
    """A message with a base64 attachment of ``size`` random octets (LF line ends)."""
    data = random.Random(5).randbytes(size)
    return (b"From: big@example.com\nSubject: big attachment\nMIME-Version: 1.0\n"
            b"Content-Type: multipart/mixed; boundary=BIG\n\n--BIG\nContent-Type: text/plain\n\n"
            b"see attachment\n--BIG\nContent-Type: application/octet-stream; name=big.bin\n"
            b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(data)
            + b"--BIG--\n")


def deep_multipart(levels: int) -> bytes:
    """``levels`` nested multiparts (Dovecot makes the 100th an application/octet-stream)."""
    return (b"From: a@b.c\nMIME-Version: 1.0\n"
            + b"".join(b"Content-Type: multipart/mixed; boundary=L%d\n\n--L%d\n" % (i, i)
                       for i in range(levels))
            + b"Content-Type: text/plain\n\ndeep\n"
            + b"".join(b"--L%d--\n" % i for i in reversed(range(levels))))


def deep_rfc822(levels: int) -> bytes:
    return (b"From: a@b.c\nMIME-Version: 1.0\n"
            + b"".join(b"Content-Type: message/rfc822\n\nSubject: level %d\n" % i
                       for i in range(levels))
            + b"Content-Type: text/plain\n\ndeep\n")


def too_many_parts(count: int = 10005) -> bytes:
    """More parts than Dovecot's 10,000 limit: the last one runs to the end."""
    return (b"From: a@b.c\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=X\n\n"
            + b"".join(b"--X\n\np%d\n" % i for i in range(count)) + b"--X--\n")


def corpus() -> list[tuple[str, bytes]]:
    """Every corpus message as (name, bytes), generated ones included."""
    items = [(p.stem, p.read_bytes()) for p in sorted(CORPUS_DIR.glob("*.eml"))]
    items.append(("gen-1000-parts", thousand_parts()))
    items.append(("gen-5mb-attachment", big_attachment()))
    items.append(("gen-deep-multipart-99", deep_multipart(99)))
    items.append(("gen-deep-multipart-101", deep_multipart(101)))
    items.append(("gen-deep-rfc822-101", deep_rfc822(101)))
    items.append(("gen-10005-parts", too_many_parts()))
    return items
