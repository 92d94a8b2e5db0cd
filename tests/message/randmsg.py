"""Seeded generators of MIME-shaped garbage: random header values, nested multiparts with
reused and prefix-sharing boundaries, message/rfc822 parts, junk after boundaries."""

from __future__ import annotations

import random

HEADER_NAMES = [
    b"From", b"To", b"Cc", b"Bcc", b"Sender", b"Reply-To", b"Subject", b"Date", b"Message-ID",
    b"In-Reply-To", b"Content-Type", b"Content-Transfer-Encoding", b"Content-Disposition",
    b"Content-Language", b"Content-ID", b"Content-Description", b"Content-Location",
    b"MIME-Version", b"X-Other",
]
VALUE_TOKENS = [
    b" ", b"  ", b"\t", b"a", b"bc", b"@", b"<", b">", b",", b";", b":", b"\"", b"\\", b"(",
    b")", b"[", b"]", b".", b"=", b"/", b"*", b"'", b"%", b"\xc3\xa9", b"\xe9", b"=?utf-8?q?x?=",
    b"text", b"plain", b"multipart", b"mixed", b"message", b"rfc822", b"boundary", b"b1",
    b"charset", b"name*0", b"name*1*", b"base64", b"group:", b"x@y.z", b"\r\n ", b"0", b"1",
]
ADDRESS_TOKENS = [b" ", b"\t", b"a", b"bc", b"@", b"<", b">", b",", b";", b":", b"\"", b"\\",
                  b"(", b")", b"[", b"]", b".", b"=", b"'", b"\xe9", b"x@y.z", b"0"]


class MessageGenerator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.header_names = list(HEADER_NAMES)
        self.value_tokens = list(VALUE_TOKENS)

    def value(self, tokens: list[bytes] | None = None, most: int = 12) -> bytes:
        tokens = self.value_tokens if tokens is None else tokens
        return b"".join(self.rng.choice(tokens) for _ in range(self.rng.randrange(0, most)))

    def header(self, extra: bytes = b"") -> bytes:
        rng = self.rng
        lines = [rng.choice(self.header_names) + b":" + (b" " if rng.random() < .8 else b"")
                 + self.value() for _ in range(rng.randrange(0, 7))]
        return b"\r\n".join(lines) + (b"\r\n" if lines else b"") + extra

    def entity(self, depth: int = 0) -> bytes:
        rng = self.rng
        r = rng.random()
        if depth < 3 and r < 0.3:
            b = rng.choice([b"b1", b"b2", b"b1x", b"b"])
            out = self.header(b"Content-Type: multipart/"
                              + rng.choice([b"mixed", b"digest", b"alternative"])
                              + b"; boundary=" + b + b"\r\n") + b"\r\n"
            if rng.random() < .5:
                out += b"pre\r\n"
            for _ in range(rng.randrange(0, 4)):
                out += (b"--" + b + (b"" if rng.random() < .9 else b"junk") + b"\r\n"
                        + self.entity(depth + 1) + b"\r\n")
            if rng.random() < .8:
                out += b"--" + b + b"--\r\n"
            if rng.random() < .3:
                out += b"epi\r\n"
            return out
        if depth < 3 and r < 0.45:
            return self.header(b"Content-Type: message/rfc822\r\n") + b"\r\n" + self.entity(
                depth + 1)
        body = b"".join(rng.choice([b"line\r\n", b"x", b"\r\n", b"=3D", b"aGk=", b"--b1\r\n",
                                    b"\n", b"\r"]) for _ in range(rng.randrange(0, 6)))
        return self.header() + (b"\r\n" if rng.random() < .9 else b"") + body

    def message(self) -> bytes:
        return self.entity() or b"x"

    def address(self) -> bytes:
        return self.value(ADDRESS_TOKENS, 10) or b"a"
