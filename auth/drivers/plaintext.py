"""Passdbs that check a plaintext password themselves instead of returning a stored one:
PAM (the password goes to the PAM stack) and LDAP with ``auth_bind = yes`` (a bind as the
user). The chain hands them the password; for lookups without one (auth-master PASS,
credentials for CRAM-MD5 …) their ``lookup`` answers as Dovecot does for such databases."""

from __future__ import annotations

import abc

from cote.auth.drivers.base import PassdbDriver, PassdbLookup
from cote.auth.request import AuthRequest


class PlaintextPassdb(PassdbDriver):
    # False: the password can be checked against what ``lookup`` finds (LDAP without
    # auth_bind), so the chain does that, with the auth cache, as for SQL.
    checks_password = True

    @abc.abstractmethod
    async def authenticate(self, request: AuthRequest, password: bytes) -> PassdbLookup:
        """OK when ``password`` is right (``password`` of the result stays None: verified);
        PASSWORD_MISMATCH, USER_UNKNOWN, USER_DISABLED, PASS_EXPIRED or INTERNAL_FAILURE."""
