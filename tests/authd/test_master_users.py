"""Master users against Dovecot's auth daemon: ``user*master`` logins
(``auth_master_user_separator``), the PLAIN authorization identity, ``pass = yes`` (the normal
passdbs must then know the wanted user) and ``pass = no``, with the reply fields Dovecot sends
(``original_user=``, ``auth_user=``, ``code=authz_fail``) and the REQUEST reply a mail process
gets afterwards. Both daemons read the same passwd-files."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.authd.pairs import oracle_pair
from tests.authd.test_daemon_vs_dovecot import Pair, b64, converse
from tests.authd.test_request_and_proxy import login_then_request


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    # "admin" may log in as users the normal passdb knows (pass = yes); "root" as anyone.
    def conf(d: Path) -> str:
        (d / "masters").write_text("admin:{PLAIN}adminpw::::::\n")
        (d / "roots").write_text("root:{PLAIN}rootpw::::::\n")
        return ("auth_master_user_separator = *\nauth_failure_delay = 0\nauth_verbose = yes\n"
                f"passdb {{\n  driver = passwd-file\n  args = {d}/masters\n  master = yes\n"
                f"  pass = yes\n}}\n"
                f"passdb {{\n  driver = passwd-file\n  args = {d}/roots\n  master = yes\n}}\n")

    with oracle_pair({"user1": "pass1", "user2": "pass2"}, conf,
                     passwd_extra={"user2": "quota_rule=*:storage=1G"}) as pair:
        yield pair


AUTH = ("AUTH", "1", "PLAIN", "service=imap", "secured", "no-penalty", "lip=127.0.0.1",
        "rip=127.0.0.1", "session=S1")
LOGINS = {
    "separator": b"\0user1*admin\0adminpw",
    "separator, wrong master password": b"\0user1*admin\0x",
    "separator, pass=yes, user the passdb does not know": b"\0ghost*admin\0adminpw",
    "separator, pass=no, any user": b"\0ghost*root\0rootpw",
    "separator, unknown master": b"\0user1*nobody\0x",
    "authzid": b"user1\0admin\0adminpw",
    "authzid, the user's passdb fields (pass=yes)": b"user2\0admin\0adminpw",
    "authzid, pass=no": b"user2\0root\0rootpw",
    "authzid, a normal user is no master": b"user1\0user2\0pass2",
    "authzid and separator: the authzid wins": b"user2\0user1*admin\0adminpw",
    "normal login": b"\0user1\0pass1",
    "normal login, wrong password": b"\0user1\0nope",
}


@pytest.mark.parametrize("name", list(LOGINS))
def test_master_logins_match(pair: Pair, name: str) -> None:
    steps = [(*AUTH, "resp=" + b64(LOGINS[name]))]
    theirs = converse(str(pair.dovecot.base_dir / "auth-client"), steps)
    ours = converse(str(pair.cote.socket_path("auth-client")), steps)
    assert ours == theirs


def test_login_mechanism_with_separator_matches(pair: Pair) -> None:
    steps = [("AUTH", "1", "LOGIN", "service=imap", "secured", "no-penalty"),
             ("CONT", "1", b64(b"user2*admin")), ("CONT", "1", b64(b"adminpw"))]
    theirs = converse(str(pair.dovecot.base_dir / "auth-client"), steps)
    ours = converse(str(pair.cote.socket_path("auth-client")), steps)
    assert ours == theirs
    assert "auth_user=admin" in ours[-1]


@pytest.mark.parametrize("resp", [b"\0user2*admin\0adminpw", b"user1\0root\0rootpw"])
def test_request_after_a_master_login_matches(pair: Pair, resp: bytes) -> None:
    theirs = login_then_request(pair.dovecot.base_dir, "", resp)
    ours = login_then_request(pair.cote.base_dir, "", resp)
    assert ours == theirs
    assert theirs[0].startswith("OK")


def test_master_logins_are_logged_like_dovecot(pair: Pair) -> None:
    for resp in (b"\0user1*admin\0x", b"\0ghost*admin\0adminpw", b"\0user1*nobody\0x"):
        steps = [(*AUTH[:-1], "session=LOG", "resp=" + b64(resp))]
        converse(str(pair.dovecot.base_dir / "auth-client"), steps)
        converse(str(pair.cote.socket_path("auth-client")), steps)
    deadline = time.monotonic() + 5
    while True:  # both write through a log process
        theirs = re.findall(r"auth: Info: (.*<LOG>.*)", pair.dovecot.log_path.read_text())
        ours = re.findall(r"auth: Info: (.*<LOG>.*)", pair.cote.log_text())
        if (len(theirs) >= 4 and len(ours) >= len(theirs)) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert "passwd-file(admin,127.0.0.1,master,<LOG>): Password mismatch" in theirs
    assert ours == theirs
