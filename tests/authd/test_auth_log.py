"""auth_verbose / auth_verbose_passwords log lines against Dovecot's: the same requests to
both daemons (same passwd-file), their auth log lines compared after the timestamps.

Covered: success (no line), wrong password, unknown user (passdb and userdb), nologin (no
line), a disallowed user name character, a CRAM-MD5 mismatch, a missing per-user passdb file,
with the given password shown as ``plain`` or as a cut ``sha1:N`` digest, and the same lines
when only auth_debug_passwords is on (Debug: lines are not compared: cote writes none)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.authd.pairs import oracle_pair
from tests.authd.test_daemon_vs_dovecot import LineClient, Pair, b64, converse

AUTH = ("AUTH", "1", "PLAIN", "service=imap", "secured", "no-penalty", "lip=127.0.0.1",
        "rip=127.0.0.2", "session=S1")
LOGINS = [b"\0user1\0pass1", b"\0user1\0wrong", b"\0ghost\0pw", b"\0nolog\0x",
          b"\0us\x01er\0pw", b"\0nofile\0pw"]


# auth_verbose_passwords values; "debug": auth_verbose = no but auth_debug_passwords = yes,
# which turns on auth_debug and so auth_verbose (not the passwords in its lines)
SETTINGS = {"sha1:6": "auth_verbose = yes\nauth_verbose_passwords = sha1:6\n",
            "plain": "auth_verbose = yes\nauth_verbose_passwords = plain\n",
            "no": "auth_verbose = yes\nauth_verbose_passwords = no\n",
            "debug": "auth_verbose = no\nauth_debug_passwords = yes\n"}


@pytest.fixture(scope="module", params=list(SETTINGS))
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    # a second passdb that only "nofile" reaches, reading a file that does not exist
    def conf(d: Path) -> str:
        return (f"auth_failure_delay = 0\n{SETTINGS[request.param]}"
                f"passdb {{\n  driver = passwd-file\n  args = {d}/missing-%n\n"
                f"  skip = authenticated\n}}\n")

    with oracle_pair({"user1": "pass1", "nolog": "x"}, conf,
                     mechanisms="plain login cram-md5",
                     passwd_extra={"nolog": "nologin reason=Try"}) as pair:
        yield pair


def exercise(base: str, master: str, logins: list[bytes] = LOGINS) -> list[str]:
    replies = []
    for resp in logins:
        replies += converse(f"{base}/auth-client", [(*AUTH, "resp=" + b64(resp))])
    replies += converse(f"{base}/auth-client",
                        [("AUTH", "1", "CRAM-MD5", "service=imap", "secured", "no-penalty")],
                        cram=("user1", "bad"))
    c = LineClient(master)
    c.send("VERSION", "1", "0")
    c.line()
    c.line()
    for n, user in enumerate(("user1", "ghost")):
        c.send("USER", str(n), user, "service=imap")
        replies.append(c.line())
    c.close()
    return replies


def auth_lines(text: str) -> list[str]:
    return re.findall(r"^\w+ +\d+ [\d:]+ (auth: (?:Info|Error|Warning): .*)$", text, re.M)


def settled(pair: Pair, extract: Callable[[str], list[str]], last: str
            ) -> tuple[list[str], list[str]]:
    """Both daemons' log lines once Dovecot's last one (containing ``last``) is written and
    cote has as many: both write through a log process."""
    deadline = time.monotonic() + 5
    while True:
        theirs = extract(pair.dovecot.log_path.read_text())
        ours = extract(pair.cote.log_text())
        if (len(ours) >= len(theirs) and theirs and last in theirs[-1]) or \
                time.monotonic() > deadline:
            return theirs, ours
        time.sleep(0.05)


def test_log_lines_match(pair: Pair) -> None:
    theirs_replies = exercise(str(pair.dovecot.base_dir),
                              str(pair.dovecot.base_dir / "auth-master"))
    ours_replies = exercise(str(pair.cote.base_dir), str(pair.cote.socket_path("auth-master")))
    theirs, ours = settled(pair, auth_lines, "ghost")
    assert ours == theirs
    assert any("Password mismatch" in x for x in theirs)
    assert [re.sub(r"\t\S+=\S+$", "", x) for x in ours_replies] == \
        [re.sub(r"\t\S+=\S+$", "", x) for x in theirs_replies]


DEBUG_SKIP = re.compile(r"Loading modules|Module loaded|auth token secret|:Read \d+ users|"
                        r"missing-|nofile")


@pytest.fixture(scope="module", params=["no", "yes"])
def debug_pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    conf = (f"auth_failure_delay = 0\nauth_debug = yes\n"
            f"auth_debug_passwords = {request.param}\n")
    with oracle_pair({"user1": "pass1", "nolog": "x"}, conf,
                     mechanisms="plain login cram-md5",
                     passwd_extra={"nolog": "nologin reason=Try"}) as pair:
        yield pair


def debug_lines(text: str) -> list[str]:
    lines = re.findall(r"^\w+ +\d+ [\d:]+ (auth: (?:Debug|Info|Error): .*)$", text, re.M)
    masked = (re.sub(r"(client (?:passdb out|in): CONT\t1\t)\S+", r"\1<random>", x)
              for x in lines if not DEBUG_SKIP.search(x))
    return list(masked)


def test_debug_lines_match(debug_pair: Pair) -> None:
    """auth_debug: the protocol traces (responses hidden unless auth_debug_passwords),
    each database's Performing/lookup/Finished lines, the password comparison with
    auth_debug_passwords, in Dovecot's order (PLAIN logins, CRAM-MD5, USER lookups)."""
    pair = debug_pair
    exercise(str(pair.dovecot.base_dir), str(pair.dovecot.base_dir / "auth-master"),
             LOGINS[:4])
    exercise(str(pair.cote.base_dir), str(pair.cote.socket_path("auth-master")), LOGINS[:4])
    theirs, ours = settled(pair, debug_lines, "userdb out: NOTFOUND")
    assert ours == theirs
    assert any("Performing passdb lookup" in x for x in theirs)
