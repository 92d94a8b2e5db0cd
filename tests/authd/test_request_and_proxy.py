"""A login's REQUEST reply and a proxying passdb's OK reply, against Dovecot's bytes.

The login goes through the login processes' socket (``login/login``), the REQUEST through
auth-master, exactly as cote's (and Dovecot's) login and mail processes use them."""

from __future__ import annotations

from pathlib import Path

from tests.authd.test_daemon_vs_dovecot import LineClient, b64
from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle


def login_then_request(base: Path, user: str, resp: bytes | None = None) -> tuple[str, str]:
    """The OK of a PLAIN login (``resp``, by default ``user`` with password ``p``) and the
    auth-master REQUEST reply for it."""
    c = LineClient(str(base / "login/login"))
    c.send("VERSION", "1", "2")
    c.send("CPID", "4242")
    handshake = c.until("DONE")
    cookie = next(x for x in handshake if x.startswith("COOKIE")).split("\t")[1]
    c.send("AUTH", "7", "PLAIN", "service=imap", "secured", "lip=127.0.0.1", "rip=127.0.0.1",
           "resp=" + b64(resp if resp is not None else f"\0{user}\0p".encode()))
    ok = c.line()
    m = LineClient(str(base / "auth-master"))
    m.send("VERSION", "1", "0")
    m.line()
    m.line()
    m.send("REQUEST", "3", "4242", "7", cookie)
    request = m.line()
    c.close()
    m.close()
    return ok, request


def test_request_reply_and_proxy_pass_match_dovecot() -> None:
    dc = DovecotOracle(users={"u": "p", "px": "p"},
                       passwd_extra={"px": "proxy host=127.0.0.1 port=1"})
    try:
        dc.start()
        cote = CoteServer(mail_location=f"maildir:{dc.dir}/mail/%u",
                          passwd_file=dc.dir / "users", protocols="lmtp")
        try:
            cote.start()
            for user in ("u", "px"):
                theirs = login_then_request(dc.base_dir, user)
                ours = login_then_request(cote.base_dir, user)
                assert ours[0] == theirs[0], user
                if user == "u":
                    assert ours[1] == theirs[1]
                    assert theirs[1].endswith("\tauth_mech=PLAIN")
            assert theirs[0].endswith("\tpass=p")
        finally:
            cote.cleanup()
    finally:
        dc.cleanup()
