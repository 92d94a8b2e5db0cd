"""DIGEST-MD5 (RFC 2831), qop=auth only, as Dovecot 2.3 offers it.

Needs the ``DIGEST-MD5`` credentials: MD5(user:realm:password), stored as {DIGEST-MD5} for
``user@realm`` or derived from a plaintext password. A response naming a realm logs in as
``user@realm``. Success carries ``rspauth=…`` as final data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from cote.auth.mechanisms.base import Challenge, Mechanism, Step
from cote.auth.protocol.auth_client import MechFlag

_TOKEN = re.compile(rb'\s*([A-Za-z0-9_-]+)\s*=\s*')


def parse_directives(data: bytes) -> dict[str, bytes]:
    """``key=value, key="quoted \\" value"`` → dict (keys lowercased); ValueError if broken."""
    out: dict[str, bytes] = {}
    pos = 0
    n = len(data)
    while pos < n:
        while pos < n and data[pos:pos + 1] in (b",", b" ", b"\t", b"\r", b"\n"):
            pos += 1
        if pos >= n:
            break
        m = _TOKEN.match(data, pos)
        if m is None:
            raise ValueError("Invalid directive")
        key = m.group(1).decode("ascii").lower()
        pos = m.end()
        if data[pos:pos + 1] == b'"':
            pos += 1
            value = bytearray()
            while True:
                if pos >= n:
                    break  # an unterminated quote runs to the end, as Dovecot reads it
                c = data[pos:pos + 1]
                if c == b"\\" and pos + 1 < n:
                    value += data[pos + 1:pos + 2]
                    pos += 2
                elif c == b'"':
                    pos += 1
                    break
                else:
                    value += c
                    pos += 1
            val = bytes(value)
        else:
            end = data.find(b",", pos)
            end = n if end < 0 else end
            val = data[pos:end].strip()
            pos = end
        if key in out:
            raise ValueError(f"Duplicate {key} directive")
        out[key] = val
    return out


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


class DigestMD5(Mechanism):
    name = "DIGEST-MD5"
    flags = MechFlag.DICTIONARY | MechFlag.ACTIVE | MechFlag.MUTUAL_AUTH

    nonce = ""
    fields: dict[str, bytes]

    def _initial(self, data: bytes | None) -> Step:
        self.nonce = self.new_nonce()
        # One realm= per auth_realms entry, written as configured (Dovecot adds no escaping).
        realms = self.context.realms or ("",)
        parts = [f'realm="{r}"' for r in realms]
        parts += [f'nonce="{self.nonce}"', 'qop="auth"', 'charset="utf-8"',
                  'algorithm="md5-sess"']
        return Challenge(",".join(parts).encode())

    def new_nonce(self) -> str:
        return base64.b64encode(secrets.token_bytes(16)).decode("ascii")

    def _continue(self, data: bytes) -> Step:
        try:
            fields = parse_directives(data)
        except ValueError as e:
            return self.fail(str(e))
        charset = fields.get("charset")
        if charset is not None and charset.lower() != b"utf-8":
            return self.fail("Only utf-8 charset is allowed")
        encoding = "utf-8" if charset is not None else "latin-1"
        for required in ("nonce", "cnonce", "username", "nc", "digest-uri", "response"):
            if required not in fields:
                return self.fail(f"Missing {required} parameter")
        if fields["nonce"] != self.nonce.encode():
            return self.fail("Invalid nonce")
        if fields["nc"] != b"00000001":
            return self.fail("nc value not 00000001")
        qop = fields.get("qop", b"auth")
        if qop != b"auth":
            return self.fail(f"Unsupported qop: {qop.decode('ascii', 'replace')}")
        if "cipher" in fields:
            return self.fail("cipher not supported")
        response = fields["response"]
        if len(response) != 32:
            return self.fail("Invalid response length")
        user = fields["username"].decode(encoding, "surrogateescape")
        realm = fields.get("realm", b"").decode(encoding, "surrogateescape")
        authzid = fields.get("authzid", b"").decode("utf-8", "surrogateescape")
        self.fields = fields
        failure = self.set_user(f"{user}@{realm}" if realm else user, authzid)
        if failure is not None:
            return failure
        return self.lookup("DIGEST-MD5")

    def _credentials(self, data: bytes) -> Step:
        if len(data) != 16:
            return self.fail("invalid credentials length")
        f = self.fields
        a1 = data + b":" + f["nonce"] + b":" + f["cnonce"]
        if f.get("authzid"):
            a1 += b":" + f["authzid"]
        ha1 = _md5(a1).hex().encode()
        uri = f["digest-uri"]

        def kd(a2: bytes) -> bytes:
            ha2 = _md5(a2).hex().encode()
            return _md5(ha1 + b":" + f["nonce"] + b":" + f["nc"] + b":" + f["cnonce"] +
                        b":auth:" + ha2).hex().encode()

        if not hmac.compare_digest(kd(b"AUTHENTICATE:" + uri), f["response"].lower()):
            return self.fail("Password mismatch")
        return self.succeed(final=b"rspauth=" + kd(b":" + uri))
