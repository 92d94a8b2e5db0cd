"""A throwaway Dovecot whose users exercise %-variables in both of its expansion contexts.

* mail-user context: ``doveadm user -e TEMPLATE USER`` expands any template for a user;
* auth context: passwd-file extra fields (``key=TEMPLATE``) are expanded by the auth process
  on ``doveadm auth test``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.dovecot import DovecotOracle, dovecot_available

MAIL_USERS = ["John.Doe@Mail.Example.ORG", "12345", "a@b@c.d", "sp ace ", "Ünï.cödé@exämple.org"]

# userdb fields of "plain" (values to feed modifiers through %{userdb:…})
PLAIN_FIELDS = {
    "t1": "12abc", "t2": "18446744073709551616", "t3": "007", "t4": "a.b.c", "t5": "-5",
    "t6": "18446744073709551615", "t7": "Mixed.Case", "t8": "x\"y'z\\w",
}

# Auth-context templates: expanded by Dovecot's auth process as passwd-file extra fields.
AUTH_TEMPLATES = {
    "x01": "%u", "x02": "%n", "x03": "%d", "x04": "%{domain_first}", "x05": "%{domain_last}",
    "x06": "%s", "x07": "%l", "x08": "%r", "x09": "%a", "x10": "%b", "x11": "%m", "x12": "%w",
    "x13": "%{rip}", "x14": "%{lip}", "x15": "%{rport}", "x16": "%{lport}", "x17": "%p",
    "x18": "%{mech}", "x19": "%{real_rip}", "x20": "%{orig_user}", "x21": "%{original_username}",
    "x22": "%{auth_user}", "x23": "%{master_user}", "x24": "%{passdb:x01}",
    "x25": "%{passdb:nope:none}", "x26": "%Lu/%2.1n/%-3.3d", "x27": "%{sha256;truncate=32:user}",
    "x28": "%D{domain_last}", "x29": "%{if;%s;eq;imap;I;O}", "x30": "%Ur-%Xa",
    "x31": "%{real_remote_ip}", "x32": "%{local_port}", "x33": "%{remote_port}",
    "x34": "%{original_domain}", "x35": "%{auth_domain}", "x36": "%N{password}",
}
AUTH_USERS = {"a@b@c.d": "Secr3t", "Bob@Example.COM": "hunter2"}
# A user whose extra field names a variable the auth context lacks: the lookup fails.
BROKEN_USER = ("broken@example.org", "x", "x01=%u x02=%i")
AUTH_INFO = {"service": "imap", "rip": "10.1.2.3", "lip": "10.9.8.7", "rport": "5555",
             "lport": "143"}


@pytest.fixture(scope="module")
def oracle() -> Iterator[DovecotOracle]:
    if not dovecot_available():
        pytest.fail("Debian's dovecot-core is not installed: run scripts/test (it installs it)")
    auth_extra = " ".join(f"{k}={v}" for k, v in AUTH_TEMPLATES.items())
    users = {u: "mailpass" for u in MAIL_USERS}
    users.update(AUTH_USERS)
    users["plain"] = "plainpass"
    extra = {u: auth_extra for u in AUTH_USERS}
    users[BROKEN_USER[0]] = BROKEN_USER[1]
    extra[BROKEN_USER[0]] = BROKEN_USER[2]
    extra["plain"] = " ".join(f"userdb_{k}={v}" for k, v in PLAIN_FIELDS.items())
    dc = DovecotOracle(users=users, passwd_extra=extra,
                       extra_conf="auth_username_format =\nauth_username_chars =\n")
    dc.start()
    yield dc
    dc.cleanup()
