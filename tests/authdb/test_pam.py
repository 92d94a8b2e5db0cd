"""passdb pam (through cote's root auth-worker processes), passdb shadow and userdb passwd
against Dovecot's, on a throwaway system user and PAM service."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.authdb.wire import Pair, b64, converse, plain, start_pair, user_lookup
from tests.support.pamuser import PamUser, pam_available

pytestmark = pytest.mark.skipif(not pam_available(), reason="needs root and /etc/pam.d")

PASSWORD = "S3cret-pä"


@pytest.fixture(scope="module")
def account() -> Iterator[PamUser]:
    with PamUser(PASSWORD) as p:
        yield p


@pytest.fixture(scope="module")
def pair(account: PamUser) -> Iterator[Pair]:
    conf = f"""\
passdb {{
  driver = pam
  args = session=yes setcred=yes max_requests=3 {account.service}
}}
userdb {{
  driver = passwd
}}
"""
    yield from start_pair(conf)


@pytest.fixture(scope="module")
def shadow_pair(account: PamUser) -> Iterator[Pair]:
    yield from start_pair("passdb {\n  driver = shadow\n}\nuserdb {\n  driver = passwd\n}\n")


def cases(user: str) -> dict[str, list[tuple[str, ...]]]:
    return {
        "ok": [plain(user, PASSWORD)],
        "wrong password": [plain(user, "wrong")],
        "empty password": [plain(user, "")],
        "unknown user": [plain("nosuchuser-cote", "x")],
        "login mechanism (two prompts answered)": [
            ("AUTH", "1", "LOGIN", "service=imap", "secured", "no-penalty"),
            ("CONT", "1", b64(user.encode())), ("CONT", "1", b64(PASSWORD.encode()))],
        "hostile name": [plain("*)(uid=*", "x")],
        "hostile quote": [plain("a' OR '1'='1", "x")],
        "long name": [plain("A" * 1024, "x")],
    }


@pytest.mark.parametrize("name", list(cases("x")))
def test_pam_matches_dovecot(pair: Pair, account: PamUser, name: str) -> None:
    steps = cases(account.user)[name]
    theirs_path, ours_path = pair.sockets("auth-client")
    theirs, ours = converse(theirs_path, steps), converse(ours_path, steps)
    assert ours == theirs
    assert ours[-1].startswith("OK" if name.startswith(("ok", "login")) else "FAIL")


@pytest.mark.parametrize("name", ["ok", "wrong password", "unknown user", "hostile name"])
def test_shadow_matches_dovecot(shadow_pair: Pair, account: PamUser, name: str) -> None:
    steps = cases(account.user)[name]
    theirs_path, ours_path = shadow_pair.sockets("auth-client")
    assert converse(ours_path, steps) == converse(theirs_path, steps)


def test_nul_in_the_name_is_not_cut(pair: Pair, account: PamUser) -> None:
    """An escaped NUL after the real name: cote never looks up the shorter name (Dovecot's C
    strings end at the NUL, so it answers for the account)."""
    theirs_path, ours_path = pair.sockets("auth-master")
    assert user_lookup(ours_path, account.user + "\x010x") == "NOTFOUND\t7"
    assert user_lookup(theirs_path, account.user + "\x010x").startswith("USER\t7\t")


@pytest.mark.parametrize("who", ["account", "root", "nosuchuser-cote", "*)(uid=*"])
def test_passwd_userdb_matches_dovecot(pair: Pair, account: PamUser, who: str) -> None:
    user = account.user if who == "account" else who
    theirs_path, ours_path = pair.sockets("auth-master")
    assert user_lookup(ours_path, user) == user_lookup(theirs_path, user)


def test_expired_account_fails_like_dovecot(pair: Pair, account: PamUser) -> None:
    steps = [plain(account.user, PASSWORD)]
    theirs_path, ours_path = pair.sockets("auth-client")
    account.expire()
    try:
        theirs, ours = converse(theirs_path, steps)[0], converse(ours_path, steps)[0]
    finally:
        account.unexpire()
    assert theirs.startswith("FAIL") and "code=pass_expired" in theirs
    # cote's auth service orders FAIL's fields differently and sends no reason= yet
    # (a difference of the daemon's reply, not of the PAM result).
    assert ours.startswith("FAIL\t1\t")
    assert set(ours.split("\t")[2:]) <= set(theirs.split("\t")[2:])
    assert "code=pass_expired" in ours


def test_concurrent_pam_logins_use_several_workers(pair: Pair, account: PamUser) -> None:
    _, ours_path = pair.sockets("auth-client")
    steps = [[plain(account.user, PASSWORD if i % 2 == 0 else "bad")] for i in range(16)]
    start = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda s: converse(ours_path, s)[0], steps))
    for i, reply in enumerate(replies):
        assert reply.startswith("OK" if i % 2 == 0 else "FAIL"), (i, reply)
    assert time.monotonic() - start < 20
    workers = [x for x in pair.cote.log_text().splitlines() if "auth-worker" in x and
               "rror" in x]
    assert not workers, workers
