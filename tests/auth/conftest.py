"""Fixtures for the auth building blocks: a Dovecot whose auth offers every mechanism."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.auth.auth_socket import wait_for_socket
from tests.support.dovecot import DOVEADM, DovecotOracle, dovecot_available

MECHANISMS = ("plain login cram-md5 digest-md5 scram-sha-1 scram-sha-256 apop anonymous "
              "oauthbearer xoauth2 external")
USERS = {"user1": "pass1", "user2@example.org": "pässwörd €", "user3": ""}
PASSWD_EXTRA = {"user3": "nopassword"}
# Users whose passdb entry is a hash made by doveadm (second passdb): user → (scheme, password)
HASHED = {
    "cram@example.org": ("CRAM-MD5", "crämpw"),
    "digest@example.org": ("DIGEST-MD5", "digestpw"),
    "scram1@example.org": ("SCRAM-SHA-1", "scräm1"),
    "scram256@example.org": ("SCRAM-SHA-256", "scräm256"),
    "ssha@example.org": ("SSHA512", "sshapw"),
    "blf@example.org": ("BLF-CRYPT", "blfpw"),
}


def doveadm_hash(scheme: str, password: str, user: str) -> str:
    return subprocess.run([DOVEADM, "pw", "-s", scheme, "-u", user, "-p", password],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def hashed_users() -> dict[str, str]:
    """user → stored hash (made by doveadm) for the oracle's second passdb."""
    return {user: doveadm_hash(scheme, pw, user) for user, (scheme, pw) in HASHED.items()}


@pytest.fixture(scope="module")
def auth_oracle(hashed_users: dict[str, str]) -> Iterator[DovecotOracle]:
    """Dovecot with all mechanisms, no failure delay and verbose auth logging; plaintext
    users in the first passdb, doveadm-hashed ones in a second."""
    if not dovecot_available():
        pytest.fail("Debian's dovecot-core is not installed: run scripts/test (it installs it)")
    oracle = DovecotOracle(users=USERS, passwd_extra=PASSWD_EXTRA)
    hashed_file = oracle.dir / "hashed-users"
    hashed_file.write_text("".join(f"{u}:{h}\n" for u, h in hashed_users.items()))
    oracle.extra_conf = (f"auth_mechanisms = {MECHANISMS}\nauth_failure_delay = 0\n"
                         "auth_verbose = yes\nauth_ssl_username_from_cert = yes\n"
                         f"passdb {{\n  driver = passwd-file\n  args = {hashed_file}\n}}\n")
    oracle.start()
    # start() waits for the IMAP port; the auth sockets may come a moment later.
    for name in ("auth-client", "auth-login", "auth-master"):
        wait_for_socket(oracle.base_dir / name)
    yield oracle
    oracle.cleanup()
