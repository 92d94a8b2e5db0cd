"""OAUTHBEARER (RFC 7628) and XOAUTH2 (Google's): a bearer token instead of a password.

The token goes to the passdb as the password (``VerifyPlain``), where an ``oauth2`` passdb
validates it (any other passdb compares it like a password, as in Dovecot). A rejected token
gets the JSON error challenge first; the client's answer to it (``\\x01`` for OAUTHBEARER)
ends the exchange with a failure.
"""

from __future__ import annotations

from cote.auth.mechanisms.base import (
    Challenge,
    Failure,
    Mechanism,
    PassdbResult,
    Step,
)
from cote.auth.mechanisms.plain import text
from cote.auth.mechanisms.scram import unescape_saslname
from cote.auth.protocol.auth_client import MechFlag


def _bearer(value: str) -> str | None:
    scheme, sep, token = value.partition(" ")
    if not sep or scheme.lower() != "bearer" or not token:
        return None
    return token


class _OAuth(Mechanism):
    flags = MechFlag.PLAINTEXT
    error_json = b""
    error_sent = False

    rejected = PassdbResult.PASSWORD_MISMATCH

    def _verified(self, result: PassdbResult) -> Step:
        if result is PassdbResult.OK:
            return self.succeed()
        if result is PassdbResult.INTERNAL_FAILURE:
            return self.passdb_failure(result)
        self.error_sent = True
        self.rejected = result
        return Challenge(self.error_json)

    def _after_error(self) -> Failure:
        # the passdb already logged why the token was rejected; a token without the scope
        # ends as Dovecot's code=user_disabled
        failure = self.passdb_failure(self.rejected)
        self._finish(failure)
        return failure


class OAuthBearer(_OAuth):
    name = "OAUTHBEARER"
    error_json = b'{"status":"invalid_token"}'

    def _continue(self, data: bytes) -> Step:
        if self.error_sent:
            return self._after_error()
        parts = text(data).split("\x01")
        gs2 = parts[0].split(",")
        if gs2[0].startswith("p="):
            return self.fail("Client requested and used channel-binding")
        if len(gs2) != 3 or gs2[0] not in ("n", "y") or gs2[2] != "":
            return self.fail("Invalid gs2-header in request")
        user = ""
        if gs2[1].startswith("a="):
            user = unescape_saslname(gs2[1][2:])
        elif gs2[1]:
            return self.fail("Invalid gs2-header in request")
        token: str | None = None
        for pair in parts[1:]:
            if not pair:
                continue
            key, sep, value = pair.partition("=")
            if not sep:
                return self.fail("Invalid continued data")
            if key == "auth":
                token = _bearer(value)
                if token is None:
                    return self.fail("Invalid continued data")
        if user:
            self.user = user
        if not user or token is None:
            return self.fail("Missing username or token")
        return self.verify_plain(token.encode("utf-8", "surrogateescape"))


class XOAuth2(_OAuth):
    name = "XOAUTH2"
    error_json = b'{"status":"401","schemes":"bearer","scope":"mail"}'

    def _continue(self, data: bytes) -> Step:
        if self.error_sent:
            return self._after_error()
        user = ""
        token: str | None = None
        for pair in text(data).split("\x01"):
            key, sep, value = pair.partition("=")
            if not sep:
                continue
            if key == "user":
                user = value
            elif key == "auth":
                token = _bearer(value)
        if user:
            self.user = user
        if not user or token is None:
            return self.fail("Username or token missing")
        return self.verify_plain(token.encode("utf-8", "surrogateescape"))
