"""The accounts, queries and checks every SQL backend's test module shares.

A module imports the ``test_*`` functions from here and defines two module-scoped fixtures:
``pair`` (Dovecot and cote on the same ``dovecot-sql.conf.ext``) and ``outage`` (stop and
start the database server, or None when the backend has no server).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.authdb.wire import (
    Pair,
    b64,
    converse,
    list_users,
    login_then_request,
    plain,
    user_lookup,
)
from tests.support.env import mail_user

ALICE_HASH = ("{SHA512-CRYPT}$6$p.jppnUyB.fIjb9Y$X3UI4ZE.izW9Ug6IcMlbWn2gZEj.kPmRKD4Eyl85jllf/"
              "xpAh3D7Wt4EsTxGwYfpUdsKn4c3PADl0cdWEL5py.")

COLUMNS = ("username", "password", "home", "uid", "gid", "mail", "quota_rule", "active")


def accounts() -> list[tuple[str | None, ...]]:
    vmail = mail_user()
    uid, gid = str(vmail.pw_uid), str(vmail.pw_gid)
    return [
        ("alice", ALICE_HASH, "/home/alice", uid, gid, "maildir:~/Maildir", "*:storage=1G", "1"),
        ("bob", "bobpw", "/home/bob", "cotevmail", gid, None, "*:messages=100", "1"),
        ("carol", "carolpw", "/home/carol", uid, gid, None, None, "0"),
        ("erin", None, "/home/erin", uid, gid, None, None, "1"),
        ("frank", "{PLAIN}it's \\ me", "/home/frank", uid, gid, "mbox:~/mail", None, "1"),
        ("pä", "pä", "/home/pä", uid, gid, None, None, "1"),
    ]


def insert_script(quote: Callable[[str], str] = lambda v: v.replace("'", "''")) -> str:
    rows = []
    for row in accounts():
        rows.append("(" + ", ".join("NULL" if v is None else f"'{quote(v)}'" for v in row) + ")")
    cols = ", ".join(COLUMNS)
    return f"INSERT INTO users ({cols}) VALUES {', '.join(rows)};\n"


def schema(text_type: str) -> str:
    cols = ", ".join(f"{c} {text_type}" for c in COLUMNS)
    return f"CREATE TABLE users ({cols});\n"


def conf_ext(driver: str, connect: str) -> str:
    return f"""\
# written like an admin's file: comments, continuation lines, quoted values
driver = {driver}
connect = {connect}
default_pass_scheme = PLAIN

password_query = SELECT username AS user, password, \\
    CASE WHEN active = '0' THEN 'Y' END AS nologin, \\
    CASE WHEN active = '0' THEN 'Account disabled' END AS reason, \\
    home AS userdb_home, uid AS userdb_uid, gid AS userdb_gid, \\
    mail AS userdb_mail, quota_rule AS userdb_quota_rule \\
  FROM users WHERE username = '%u'
user_query = "SELECT home, uid, gid, mail, quota_rule FROM users WHERE username = '%u'"
iterate_query = SELECT username AS user FROM users  # every account
"""


def auth_blocks(ext: Path) -> str:
    return f"""\
passdb {{
  driver = sql
  args = {ext}
}}
userdb {{
  driver = prefetch
}}
userdb {{
  driver = sql
  args = {ext}
}}
"""


@dataclass
class Outage:
    stop: Callable[[], None]
    start: Callable[[], None]


HOSTILE = [
    "a' OR '1'='1",
    "x' OR 1=1 -- ",
    "x\\' OR 1=1 #",
    "'; DELETE FROM users; --",
    "*)(uid=*",
    "alice%",
    "al_ce",
    "A" * 1024,
]

CONVERSATIONS: dict[str, list[tuple[str, ...]]] = {
    "crypt password ok": [plain("alice", "alicepw")],
    "wrong password": [plain("alice", "nope")],
    "unknown user": [plain("ghost", "x")],
    "upper-case login name": [plain("ALICE", "alicepw")],
    "plain password ok with prefetch fields": [plain("bob", "bobpw")],
    "disabled account (nologin)": [plain("carol", "carolpw")],
    "NULL password": [plain("erin", "")],
    "password with quote and backslash": [plain("frank", "it's \\ me")],
    "utf-8 user": [plain("pä", "pä")],
    "login mechanism": [("AUTH", "1", "LOGIN", "service=imap", "secured", "no-penalty"),
                        ("CONT", "1", b64(b"bob")), ("CONT", "1", b64(b"bobpw"))],
    **{f"hostile user {i}": [plain(u, "x")] for i, u in enumerate(HOSTILE)},
    "hostile password": [plain("bob", "' OR '1'='1")],
}


def compare(pair: Pair, fn: Callable[[str], str | list[str]], sock: str) -> None:
    theirs_path, ours_path = pair.sockets(sock)
    theirs, ours = fn(theirs_path), fn(ours_path)
    assert ours == theirs


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_conversation_matches_dovecot(pair: Pair, name: str) -> None:
    steps = CONVERSATIONS[name]
    theirs_path, ours_path = pair.sockets("auth-client")
    theirs = converse(theirs_path, steps)
    ours = converse(ours_path, steps)
    assert ours == theirs
    if name.startswith("hostile"):
        assert ours[-1].startswith("FAIL")


# auth-master lines are limited to 1 KB (both daemons hang up on longer ones): 900 bytes here.
# "\x010" is the protocol's escaped NUL.
LOOKUP_HOSTILE = [*HOSTILE[:-1], "B" * 900, "bob\x010' OR '1'='1", "\x010"]


@pytest.mark.parametrize("user", ["alice", "bob", "carol", "ghost", "ALICE", "pä",
                                  *LOOKUP_HOSTILE])
def test_user_lookup_matches_dovecot(pair: Pair, user: str) -> None:
    theirs_path, ours_path = pair.sockets("auth-master")
    theirs, ours = user_lookup(theirs_path, user), user_lookup(ours_path, user)
    if "\x010" in user:
        # Deliberate difference: Dovecot's C strings end at the NUL (it looks up "bob");
        # cote never sends a NUL to the database and the user is not found.
        assert ours == "NOTFOUND\t7"
        assert theirs == user_lookup(theirs_path, user.split("\x01", maxsplit=1)[0]) or \
            theirs.startswith("NOTFOUND")
        return
    assert ours == theirs
    if user in LOOKUP_HOSTILE:
        assert ours.startswith("NOTFOUND")


@pytest.mark.parametrize("user,password", [("bob", "bobpw"), ("alice", "alicepw")])
def test_login_request_gets_prefetched_userdb(pair: Pair, user: str, password: str) -> None:
    # Only a login-type socket's logins can be REQUESTed (Dovecot's login/login).
    d_client, c_client = pair.sockets("login/login")
    d_master, c_master = pair.sockets("auth-master")
    theirs = login_then_request(d_client, d_master, user, password)
    ours = login_then_request(c_client, c_master, user, password)
    assert ours[0].startswith("OK")
    assert ours[1].startswith("USER\t9\t" + user)
    assert ours == theirs


def test_logins_on_the_client_socket_cannot_be_requested(pair: Pair) -> None:
    # Postfix's kind of socket: its successes are not kept for auth-master REQUEST (and
    # so cost no memory). Dovecot answers FAIL (no login process of that pid is connected),
    # cote NOTFOUND: neither serves the login.
    d_client, c_client = pair.sockets("auth-client")
    d_master, c_master = pair.sockets("auth-master")
    theirs = login_then_request(d_client, d_master, "bob", "bobpw", cpid=6161)
    ours = login_then_request(c_client, c_master, "bob", "bobpw", cpid=6161)
    assert ours[0].startswith("OK") and theirs[0].startswith("OK")
    assert theirs[1] == "FAIL\t9"
    assert ours[1] == "NOTFOUND\t9"


def test_list_iterates_the_table(pair: Pair) -> None:
    theirs_path, ours_path = pair.sockets("auth-master")
    ours = list_users(ours_path)
    assert "alice" in ours and "pä" in ours
    assert ours == list_users(theirs_path)


@pytest.mark.parametrize("pattern", ["*", "a*", "*o*", "nobody*"])
def test_coteadm_user_iterates_like_doveadm(pair: Pair, pattern: str) -> None:
    """``coteadm user '*'`` lists the users iterate_query gives (and the passwd-file's)."""
    theirs, ours = pair.admin("user", pattern)
    assert ours == theirs
    if pattern == "*":
        assert {"alice", "bob", "pä"} <= set(ours[1].split()), ours


def test_hostile_names_left_the_table_intact(pair: Pair) -> None:
    _, ours_path = pair.sockets("auth-client")
    assert converse(ours_path, [plain("alice", "alicepw")])[0].startswith("OK")
    _, master_path = pair.sockets("auth-master")
    assert len(list_users(master_path)) == len(accounts()) + 1  # + the passwd-file user


def test_concurrent_lookups(pair: Pair) -> None:
    _, ours_path = pair.sockets("auth-master")
    names = ["alice", "bob", "ghost", "carol"] * 10
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda u: user_lookup(ours_path, u), names))
    for name, answer in zip(names, answers, strict=True):
        assert answer.startswith("NOTFOUND" if name == "ghost" else "USER"), \
            (name, answer, pair.cote.log_text()[-1500:])


def test_database_outage_fails_fast_and_recovers(pair: Pair, outage: Outage | None) -> None:
    if outage is None:
        pytest.skip("this backend has no server to stop")
    _, ours_path = pair.sockets("auth-client")
    assert converse(ours_path, [plain("bob", "bobpw")])[0].startswith("OK")
    outage.stop()
    try:
        for _ in range(2):
            start = time.monotonic()
            reply = converse(ours_path, [plain("bob", "bobpw")])[0]
            assert reply.startswith("FAIL\t1\t") and "code=temp_fail" in reply, reply
            assert time.monotonic() - start < 3
        _, master_path = pair.sockets("auth-master")
        assert user_lookup(master_path, "alice").startswith("FAIL\t7")
    finally:
        outage.start()
    deadline = time.monotonic() + 10
    while True:
        reply = converse(ours_path, [plain("bob", "bobpw")])[0]
        if reply.startswith("OK") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert reply.startswith("OK"), reply

