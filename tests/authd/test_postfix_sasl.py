"""Postfix SMTP AUTH through cote's auth daemon (``smtpd_sasl_type = dovecot``).

cote's config declares the listener where Postfix expects it, as admins do::

    service auth { unix_listener /var/spool/postfix/private/auth { mode = 0660 user = postfix } }

and swaks authenticates against Postfix, which asks cote (Postfix speaks VERSION first: the
client-first handshake order).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle
from tests.support.postfix import PostfixInstance


@dataclass
class Setup:
    postfix: PostfixInstance
    cote: CoteServer


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    if shutil.which("swaks") is None:
        pytest.fail("swaks is missing (Debian package swaks; scripts/test installs it)")
    users = DovecotOracle(users={"smtpuser": "s3cret", "other": "x"})
    users.write_config()  # only its passwd-file is used: Dovecot itself is not started
    pf = PostfixInstance("smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = dovecot\n"
                         "smtpd_sasl_path = private/auth\n")
    listener = pf.private_dir() / "auth"
    cote = CoteServer(mail_location=f"maildir:{users.dir}/mail/%u",
                      passwd_file=users.dir / "users", protocols="lmtp",
                      extra_conf=f"""\
service auth {{
  unix_listener {listener} {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
""")
    try:
        cote.start()
        pf.start()
        yield Setup(pf, cote)
    finally:
        cote.cleanup()
        pf.cleanup()
        users.cleanup()


def swaks(setup: Setup, mech: str, user: str, password: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{setup.postfix.port}", "--auth", mech,
         "--auth-user", user, "--auth-password", password, "--quit-after", "AUTH",
         "--timeout", "20"],
        capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_right_password_authenticates(setup: Setup, mech: str) -> None:
    result = swaks(setup, mech, "smtpuser", "s3cret")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "235 2.7.0 Authentication successful" in result.stdout


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_wrong_password_is_refused(setup: Setup, mech: str) -> None:
    result = swaks(setup, mech, "smtpuser", "wrong")
    assert result.returncode != 0
    assert "535 5.7.8 Error: authentication failed" in result.stdout
