"""passdb and userdb checkpassword against Dovecot's, with the same program
(tests/authd/checkpassword.py) and users: each daemon runs it with its own reply program
(Dovecot's checkpassword-reply, cote's cote-checkpassword-reply). Logins (accepted, refused,
unknown, exit 111), credentials lookups (CRAM-MD5: CREDENTIALS_LOOKUP=1, SCHEME=), the
auth-master USER and PASS lookups and what the program found in its environment (it sends it
back as x_* fields) must be equal."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.authd.pairs import oracle_pair
from tests.authd.test_daemon_vs_dovecot import LineClient, Pair, b64, client_handshake, converse

PROGRAM = Path(__file__).with_name("checkpassword.py")
USERS = ("user1:pass1:/home/user1:quota_rule=*:storage=1G userdb_mail=maildir:~/m\n"
         "user2:pass2:/home/u2:\n"
         "tmp:tempfail:/h:\n"
         "slow:slow:/h:\n")


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    def conf(d: Path) -> str:
        (d / "chk-users").write_text(USERS)
        args = f"{PROGRAM} {d}/chk-users"
        return ("auth_failure_delay = 0\nauth_verbose = yes\n"
                f"passdb {{\n  driver = checkpassword\n  args = {args}\n}}\n"
                f"userdb {{\n  driver = checkpassword\n  args = {args}\n}}\n")

    with oracle_pair({"x": "y"}, conf, mechanisms="plain login cram-md5") as pair:
        yield pair


AUTH = ("AUTH", "1", "PLAIN", "service=imap", "secured", "no-penalty", "lip=127.0.0.1",
        "rip=127.0.0.2", "lport=143", "session=S1")
LOGINS = {
    "accepted, with extra and userdb_ fields": b"\0user1\0pass1",
    "accepted": b"\0user2\0pass2",
    "wrong password (exit 1)": b"\0user1\0x",
    "unknown user (exit 1)": b"\0ghost\0x",
    "temporary failure (exit 111)": b"\0tmp\0x",
    "in the first passdb (passwd-file), not asked": b"\0x\0y",
    "too long for the program": b"\0user1\0" + b"p" * 600,
}


@pytest.mark.parametrize("name", list(LOGINS))
def test_logins_match(pair: Pair, name: str) -> None:
    steps = [(*AUTH, "resp=" + b64(LOGINS[name]))]
    theirs = converse(str(pair.dovecot.base_dir / "auth-client"), steps)
    ours = converse(str(pair.cote.socket_path("auth-client")), steps)
    assert ours == theirs


@pytest.mark.parametrize("user,password", [("user1", "pass1"), ("user2", "x"), ("ghost", "x")])
def test_credentials_lookup_matches(pair: Pair, user: str, password: str) -> None:
    steps = [("AUTH", "1", "CRAM-MD5", "service=imap", "secured", "no-penalty")]
    theirs = converse(str(pair.dovecot.base_dir / "auth-client"), steps, cram=(user, password))
    ours = converse(str(pair.cote.socket_path("auth-client")), steps, cram=(user, password))
    assert ours == theirs


@pytest.mark.parametrize("user", ["user1", "user2", "ghost", "tmp", "x"])
def test_master_lookups_match(pair: Pair, user: str) -> None:
    answers = []
    for path in (pair.dovecot.base_dir / "auth-master", pair.cote.socket_path("auth-master")):
        c = LineClient(str(path))
        c.send("VERSION", "1", "0")
        c.line()
        c.line()
        c.send("USER", "1", user, "service=imap")
        c.send("PASS", "2", user, "service=imap")
        answers.append(sorted([c.line(), c.line()]))
        c.close()
    theirs, ours = answers
    assert ours == theirs


def log_lines(text: str) -> list[str]:
    """checkpassword's auth log lines, pids masked."""
    lines = re.findall(r"auth: \w+: (checkpassword\(.*)", text)
    return [re.sub(r"Child \d+", "Child N", x) for x in lines]


def test_log_lines_match(pair: Pair) -> None:
    for resp in (b"\0user1\0x", b"\0tmp\0x"):
        steps = [(*AUTH[:-1], "session=LOG", "resp=" + b64(resp))]
        converse(str(pair.dovecot.base_dir / "auth-client"), steps)
        converse(str(pair.cote.socket_path("auth-client")), steps)
    deadline = time.monotonic() + 5
    while True:  # both daemons write their log through a log process: give it a moment
        theirs = [x for x in log_lines(pair.dovecot.log_path.read_text()) if "<LOG>" in x]
        ours = [x for x in log_lines(pair.cote.log_text()) if "<LOG>" in x]
        if (len(theirs) >= 2 and len(ours) >= 2) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert theirs == ["checkpassword(user1,127.0.0.2,<LOG>): Login failed (status=1)",
                      "checkpassword(tmp,127.0.0.2,<LOG>): Child N exited with status 111"]
    assert ours == theirs


def test_a_slow_program_does_not_hold_other_logins(pair: Pair) -> None:
    """The program runs in an auth-worker: while one takes 3 s, logins on other connections
    (passwd-file and checkpassword ones) are answered at once."""
    path = str(pair.cote.socket_path("auth-client"))
    slow = client_handshake(path)[0]
    slow.send(*AUTH, "resp=" + b64(b"\0slow\0x"))
    time.sleep(0.3)  # the slow program is running now
    start = time.monotonic()
    for resp in (b"\0x\0y", b"\0user2\0pass2"):
        assert converse(path, [(*AUTH, "resp=" + b64(resp))])[0].startswith("OK")
    assert time.monotonic() - start < 2
    assert slow.line() == "FAIL\t1\tuser=slow"
    assert time.monotonic() - start > 2
    slow.close()
