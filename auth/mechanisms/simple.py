"""ANONYMOUS (RFC 4505), EXTERNAL (RFC 4422 appendix A) and APOP (RFC 1939, via pop3-login)."""

from __future__ import annotations

import hashlib
import hmac
import re

from cote.auth.mechanisms.base import Mechanism, Step
from cote.auth.mechanisms.plain import text
from cote.auth.protocol.auth_client import MechFlag


class Anonymous(Mechanism):
    """Logs in as ``auth_anonymous_username``; the client's trace string is only logged."""

    name = "ANONYMOUS"
    flags = MechFlag.ANONYMOUS
    trace = ""

    def _continue(self, data: bytes) -> Step:
        self.trace = text(data)
        self.user = self.context.anonymous_username
        return self.succeed(fields=(("anonymous", None),), log=(self.trace, "login"))


class External(Mechanism):
    """The identity comes from the TLS client certificate (``cert_username``); the response
    is an optional authorization identity. The passdb is still consulted (with an empty
    password), as Dovecot does."""

    name = "EXTERNAL"
    flags = MechFlag(0)

    def _continue(self, data: bytes) -> Step:
        if self.context.cert_username is None:
            return self.fail("username not known")
        failure = self.set_user(self.context.cert_username, text(data))
        if failure is not None:
            return failure
        return self.verify_plain(b"")


_APOP_CHALLENGE = re.compile(rb"<([0-9a-fA-F]+)\.([0-9a-fA-F]+)\.([0-9a-fA-F]+)\.")


class Apop(Mechanism):
    """pop3-login sends ``challenge NUL user NUL md5(challenge+password)`` (16 raw bytes).

    The challenge must be one this auth server issued through the login process: it starts
    with ``<spid.cuid.timestamp.`` in hex, naming our pid, the login connection's CUID and a
    time not before this process started.
    """

    name = "APOP"
    flags = MechFlag.PRIVATE | MechFlag.DICTIONARY | MechFlag.ACTIVE
    challenge = b""
    digest = b""

    def _initial(self, data: bytes | None) -> Step:
        if not data:
            return self.fail("no initial response")
        return self._continue(data)

    def _continue(self, data: bytes) -> Step:
        challenge, _, rest = data.partition(b"\0")
        user, sep, digest = rest.partition(b"\0")
        if not sep or len(digest) != 16:
            return self.fail("malformed data")
        m = _APOP_CHALLENGE.match(challenge)
        if (m is None or int(m.group(1), 16) != self.context.server_pid
                or int(m.group(2), 16) != self.context.connect_uid
                or int(m.group(3), 16) < int(self.context.start_time)):
            return self.fail("invalid challenge")
        failure = self.set_user(text(user))
        if failure is not None:
            return failure
        self.challenge, self.digest = challenge, digest
        return self.lookup("PLAIN")

    def _credentials(self, data: bytes) -> Step:
        expected = hashlib.md5(self.challenge + data, usedforsecurity=False).digest()
        if not hmac.compare_digest(expected, self.digest):
            return self.fail("")  # Dovecot logs nothing for a wrong APOP digest
        return self.succeed()
