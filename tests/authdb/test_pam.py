"""passdb pam (through cote's root auth-worker processes), passdb shadow and userdb passwd
against Dovecot's, on a throwaway system user and PAM service."""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.authdb.wire import Pair, b64, converse, master, plain, start_pair, user_lookup
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
    # cote's auth service orders FAIL's fields differently (code= first): compared as sets.
    assert ours.startswith("FAIL\t1\t")
    assert set(ours.split("\t")[2:]) == set(theirs.split("\t")[2:])
    assert "code=pass_expired" in ours and "reason=Password expired" in ours


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


def _worker_pids(pair: Pair) -> set[int]:
    """cote's auth-worker processes (children of its master) right now."""
    assert pair.cote.process is not None
    master_pid = str(pair.cote.process.pid)
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            args = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if stat[1] == master_pid and b"auth-worker" in args:
            pids.add(int(entry.name))
    return pids


def test_max_requests_recycles_the_worker(pair: Pair, account: PamUser) -> None:
    """max_requests=3: one after another, 9 logins are served by at least 3 workers (a worker
    exits after its 3rd request and the next login starts a fresh one)."""
    _, ours_path = pair.sockets("auth-client")
    seen: set[int] = set()
    for _ in range(9):
        assert converse(ours_path, [plain(account.user, PASSWORD)])[0].startswith("OK")
        seen |= _worker_pids(pair)
    assert len(seen) >= 3, seen


@pytest.fixture(scope="module")
def services(account: PamUser) -> Iterator[dict[str, str]]:
    """Two more PAM services: one that refuses everyone (pam_deny), one whose auth stage
    fails with pam_nologin's message (a PAM_ERROR_MSG for failure_show_msg)."""
    nologin = Path(tempfile.mkdtemp(prefix="cote-pam-")) / "nologin"
    nologin.write_text("Closed for maintenance\n")
    files = {"deny": "auth required pam_deny.so\naccount required pam_deny.so\n",
             "nologin": f"auth requisite pam_nologin.so file={nologin}\n"
                        "auth required pam_unix.so nodelay\naccount required pam_unix.so\n"}
    names = {kind: f"{account.service}-{kind}" for kind in files}
    for kind, text in files.items():
        Path("/etc/pam.d", names[kind]).write_text(text)
    try:
        yield names
    finally:
        for name in names.values():
            Path("/etc/pam.d", name).unlink(missing_ok=True)
        nologin.unlink()
        nologin.parent.rmdir()


@pytest.fixture(scope="module")
def service_pair(account: PamUser, services: dict[str, str]) -> Iterator[Pair]:
    """%s (the login's service names the PAM service), failure_show_msg and the auth cache
    with cache_key=%u%s, in one passdb."""
    conf = """\
auth_cache_size = 1M
auth_cache_ttl = 1 hour
auth_cache_negative_ttl = 1 hour
passdb {
  driver = pam
  args = failure_show_msg=yes cache_key=%u%s %s
}
userdb {
  driver = passwd
}
"""
    yield from start_pair(conf)


def test_service_per_protocol_and_failure_message(service_pair: Pair, account: PamUser,
                                                  services: dict[str, str]) -> None:
    """args %s: the AUTH request's service= names the PAM service (imap, pop3, smtp in
    production; here the test's own services). failure_show_msg=yes: pam_nologin's message
    is not shown to the client by Dovecot 2.3.19, nor by cote."""
    steps = {
        "own service": [plain(account.user, PASSWORD, service=account.service)],
        "deny service": [plain(account.user, PASSWORD, service=services["deny"])],
        "nologin service": [plain(account.user, PASSWORD, service=services["nologin"])],
    }
    theirs_path, ours_path = service_pair.sockets("auth-client")
    answers = {}
    for name, conversation in steps.items():
        theirs, ours = converse(theirs_path, conversation), converse(ours_path, conversation)
        assert ours == theirs, name
        answers[name] = ours[0]
    assert answers["own service"].startswith("OK")
    assert answers["deny service"] == answers["nologin service"] == \
        f"FAIL\t1\tuser={account.user}"


def test_cache_key_keeps_pam_logins(service_pair: Pair, account: PamUser) -> None:
    """cache_key=%u%s: a login that worked is kept; after the password changes in
    /etc/shadow the old one still works from the cache (and the new one through PAM), until
    CACHE-FLUSH — Dovecot does the same."""
    theirs_path, ours_path = service_pair.sockets("auth-client")
    d_master, c_master = service_pair.sockets("auth-master")
    svc = account.service

    def run(path: str, master_path: str) -> list[str]:
        out = [converse(path, [plain(account.user, PASSWORD, service=svc)])[0]]
        subprocess.run(["chpasswd"], input=f"{account.user}:Changed-1", text=True, check=True)
        try:
            out += [converse(path, [plain(account.user, PASSWORD, service=svc)])[0],
                    converse(path, [plain(account.user, "Changed-1", service=svc)])[0]]
            m = master(master_path)
            m.send("CACHE-FLUSH", "5")
            out.append(m.line())
            m.close()
            out.append(converse(path, [plain(account.user, PASSWORD, service=svc)])[0])
        finally:
            subprocess.run(["chpasswd"], input=f"{account.user}:{PASSWORD}", text=True,
                           check=True)
        return out

    theirs = run(theirs_path, d_master)
    ours = run(ours_path, c_master)
    assert ours[0].startswith("OK") and ours[1].startswith("OK"), ours  # old one, cached
    assert ours[2].startswith("OK") and ours[4].startswith("FAIL"), ours
    assert ours[:3] + ours[4:] == theirs[:3] + theirs[4:]
    assert ours[3].startswith("OK\t5\t") and ours[3] != "OK\t5\t0"
