"""PLAIN (RFC 4616) and LOGIN: the client sends the password itself; the passdb checks it."""

from __future__ import annotations

from cote.auth.mechanisms.base import Challenge, Mechanism, Step
from cote.auth.protocol.auth_client import MechFlag


def text(data: bytes) -> str:
    """Client bytes as str; bytes that are not UTF-8 survive (the daemon validates names)."""
    return data.decode("utf-8", "surrogateescape")


class Plain(Mechanism):
    name = "PLAIN"
    flags = MechFlag.PLAINTEXT

    def _continue(self, data: bytes) -> Step:
        parts = data.split(b"\0", 2)
        if len(parts) != 3:
            return self.fail("invalid input")
        authzid, authcid, password = parts
        # The password ends at a further NUL, as a C string would.
        password = password.split(b"\0", 1)[0]
        failure = self.set_user(text(authcid), text(authzid))
        if failure is not None:
            return failure
        return self.verify_plain(password)


class Login(Mechanism):
    name = "LOGIN"
    flags = MechFlag.PLAINTEXT

    def _initial(self, data: bytes | None) -> Step:
        if not data:
            return Challenge(b"Username:")
        return self._continue(data)

    def _continue(self, data: bytes) -> Step:
        if self.user is None:
            failure = self.set_user(text(data.split(b"\0", 1)[0]))
            if failure is not None:
                return failure
            return Challenge(b"Password:")
        return self.verify_plain(data.split(b"\0", 1)[0])
