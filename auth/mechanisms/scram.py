"""SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677), without channel binding (as 2.3).

Needs the ``SCRAM-SHA-*`` credentials (iterations, salt, StoredKey, ServerKey), stored as
{SCRAM-SHA-*} or derived from a plaintext password. ``y`` in the GS2 header is accepted (the
client could bind but thinks we cannot, which is true); ``p=`` is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from cote.auth.mechanisms.base import Challenge, Mechanism, Step
from cote.auth.protocol.auth_client import MechFlag
from cote.auth.schemes import SchemeError, parse_scram

SERVER_NONCE_LEN = 64


def unescape_saslname(value: str) -> str:
    """RFC 5802 saslname: ``=2C`` → ``,`` and ``=3D`` → ``=``; anything else is invalid."""
    out = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == ",":
            raise ValueError("Invalid username")
        if c == "=":
            code = value[i + 1:i + 3]
            if code == "2C":
                out.append(",")
            elif code == "3D":
                out.append("=")
            else:
                raise ValueError("Invalid username escaping")
            i += 3
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _printable_nonce() -> str:
    # Printable ASCII 0x21-0x7e except ',' (RFC 5802 "printable").
    chars = "".join(chr(c) for c in range(0x21, 0x7F) if c != 0x2C)
    return "".join(secrets.choice(chars) for _ in range(SERVER_NONCE_LEN))


class _Scram(Mechanism):
    flags = MechFlag.MUTUAL_AUTH
    hash_name = "sha1"

    gs2_header = ""
    client_first_bare = ""
    server_first = ""
    nonce = ""

    def _continue(self, data: bytes) -> Step:
        message = data.decode("utf-8")
        if not self.server_first:
            return self._client_first(message)
        return self._client_final(message)

    def _client_first(self, message: str) -> Step:
        fields = message.split(",")
        if len(fields) < 4:
            return self.fail("Invalid initial client message: Missing nonce field")
        flag = fields[0]
        if flag.startswith("p="):
            return self.fail("Channel binding not supported")
        if flag not in ("n", "y"):
            return self.fail("Invalid GS2 header")
        authzid = ""
        if fields[1].startswith("a="):
            authzid = unescape_saslname(fields[1][2:])
        elif fields[1]:
            return self.fail("Invalid authzid field")
        if fields[2].startswith("m="):
            return self.fail("Mandatory extension(s) not supported")
        if not fields[2].startswith("n="):
            return self.fail("Invalid username field")
        user = unescape_saslname(fields[2][2:])
        if not fields[3].startswith("r=") or len(fields[3]) < 3 or not all(
                0x21 <= ord(c) <= 0x7E for c in fields[3][2:]):
            return self.fail("Invalid client nonce")
        self.gs2_header = f"{fields[0]},{fields[1]},"
        self.client_first_bare = ",".join(fields[2:])
        self.nonce = fields[3][2:] + self.server_nonce()
        failure = self.set_user(user, authzid)
        if failure is not None:
            return failure
        return self.lookup(self.name)

    def server_nonce(self) -> str:
        return _printable_nonce()

    def _credentials(self, data: bytes) -> Step:
        try:
            self.keys = parse_scram(self.hash_name, data)
        except SchemeError as e:
            return self.fail(str(e))
        salt = base64.b64encode(self.keys.salt).decode("ascii")
        self.server_first = f"r={self.nonce},s={salt},i={self.keys.iterations}"
        return Challenge(self.server_first.encode())

    def _client_final(self, message: str) -> Step:
        fields = message.split(",")
        if len(fields) < 3:
            return self.fail("Invalid final client message")
        cbind = base64.b64encode(self.gs2_header.encode()).decode("ascii")
        if fields[0] != "c=" + cbind:
            return self.fail("Invalid channel binding data")
        if fields[1] != "r=" + self.nonce:
            return self.fail("Wrong nonce")
        if not fields[-1].startswith("p="):
            return self.fail("Invalid ClientProof")
        try:
            proof = base64.b64decode(fields[-1][2:], validate=True)
        except binascii.Error:
            return self.fail("Invalid base64 encoding")
        size = hashlib.new(self.hash_name).digest_size
        if len(proof) != size:
            return self.fail("Invalid ClientProof length")
        without_proof = message[:message.rindex(",p=")]
        auth_message = ",".join((self.client_first_bare, self.server_first,
                                 without_proof)).encode()
        signature = hmac.digest(self.keys.stored_key, auth_message, self.hash_name)
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(hashlib.new(self.hash_name, client_key).digest(),
                                   self.keys.stored_key):
            return self.fail("Password mismatch")
        server_signature = hmac.digest(self.keys.server_key, auth_message, self.hash_name)
        return self.succeed(final=b"v=" + base64.b64encode(server_signature))


class ScramSHA1(_Scram):
    name = "SCRAM-SHA-1"
    hash_name = "sha1"


class ScramSHA256(_Scram):
    name = "SCRAM-SHA-256"
    hash_name = "sha256"
