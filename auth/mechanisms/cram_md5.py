"""CRAM-MD5 (RFC 2195): HMAC-MD5 of a server challenge, keyed with the password.

Needs the ``CRAM-MD5`` credentials (the HMAC-MD5 context, stored as {CRAM-MD5} or derived
from a plaintext password), never the password itself.
"""

from __future__ import annotations

import hmac
import secrets
import time

from cote.auth.mechanisms.base import Challenge, Mechanism, Step
from cote.auth.mechanisms.plain import text
from cote.auth.protocol.auth_client import MechFlag
from cote.auth.schemes import hmac_md5


class CramMD5(Mechanism):
    name = "CRAM-MD5"
    flags = MechFlag.DICTIONARY | MechFlag.ACTIVE

    challenge = b""
    response = b""

    def _initial(self, data: bytes | None) -> Step:
        # Like Dovecot: <random.unixtime@hostname>; an initial response is ignored.
        self.challenge = self.new_challenge()
        return Challenge(self.challenge)

    def new_challenge(self) -> bytes:
        return f"<{secrets.randbits(63)}.{int(time.time())}@{self.context.hostname}>".encode()

    def _continue(self, data: bytes) -> Step:
        user, sep, response = data.rpartition(b" ")
        if not sep:
            return self.fail("missing digest")
        failure = self.set_user(text(user))
        if failure is not None:
            return failure
        self.response = response
        return self.lookup("CRAM-MD5")

    def _credentials(self, data: bytes) -> Step:
        if len(data) != hmac_md5.CONTEXT_LEN:
            return self.fail("invalid credentials length")
        expected = hmac_md5.hmac_from_context(data, self.challenge).hex().encode()
        if not hmac.compare_digest(expected, self.response):
            return self.fail("Password mismatch")
        return self.succeed()
