"""Fixtures for the auth building blocks: a Dovecot whose auth offers every mechanism."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.dovecot import DovecotOracle, dovecot_available

MECHANISMS = ("plain login cram-md5 digest-md5 scram-sha-1 scram-sha-256 apop anonymous "
              "oauthbearer xoauth2 external")
USERS = {"user1": "pass1", "user2@example.org": "pässwörd €", "user3": ""}
PASSWD_EXTRA = {"user3": "nopassword"}


@pytest.fixture(scope="module")
def auth_oracle() -> Iterator[DovecotOracle]:
    """Dovecot with all mechanisms, no failure delay and verbose auth logging."""
    if not dovecot_available():
        pytest.fail("Debian's dovecot-core is not installed: run scripts/test (it installs it)")
    oracle = DovecotOracle(
        users=USERS, passwd_extra=PASSWD_EXTRA,
        extra_conf=(f"auth_mechanisms = {MECHANISMS}\nauth_failure_delay = 0\n"
                    "auth_verbose = yes\nauth_ssl_username_from_cert = yes\n"))
    oracle.start()
    yield oracle
    oracle.cleanup()
