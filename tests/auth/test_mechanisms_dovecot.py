"""Differential SASL conversations: the same client exchange against Dovecot's auth-client
socket and against cote's mechanisms (in-process, through cote's own codec), same outcome."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from cote.auth.protocol import auth_client as ac
from tests.auth import sasl_clients as sc
from tests.auth.auth_socket import AuthClientBase, AuthClientSocket
from tests.auth.conftest import HASHED, MECHANISMS, PASSWD_EXTRA, USERS
from tests.auth.inprocess_auth import InProcessAuthClient, InProcessAuthServer
from tests.support.dovecot import DovecotOracle

pytestmark = pytest.mark.oracle

Exchange = Callable[[ac.ServerHandshake], tuple[bytes | None, sc.Step | None]]


@dataclass(frozen=True)
class Case:
    mechanism: str
    exchange: Exchange
    flags: tuple[str, ...] = ("secured",)
    params: tuple[tuple[str, str], ...] = ()


def _fixed(pair: tuple[bytes | None, sc.Step | None]) -> Exchange:
    return lambda _hs: pair


def _apop(user: str, password: str, *, spoof: bool = False) -> Exchange:
    def make(hs: ac.ServerHandshake) -> tuple[bytes | None, sc.Step | None]:
        spid = hs.spid + 1 if spoof else hs.spid
        challenge = f"<{spid:x}.{hs.cuid:x}.{int(time.time()):x}.0123abcd@localhost>"
        return sc.apop(challenge, user, password), None

    return make


U2, P2 = "user2@example.org", USERS["user2@example.org"]
CASES: dict[str, Case] = {
    "plain-ok": Case("PLAIN", _fixed(sc.plain("user1", "pass1"))),
    "plain-nonascii-ok": Case("PLAIN", _fixed(sc.plain(U2, P2))),
    "plain-wrong-password": Case("PLAIN", _fixed(sc.plain("user1", "pass2"))),
    "plain-unknown-user": Case("PLAIN", _fixed(sc.plain("nobody", "pass1"))),
    "plain-authzid-same": Case("PLAIN", _fixed(sc.plain("user1", "pass1", "user1"))),
    "plain-authzid-other": Case("PLAIN", _fixed(sc.plain("user1", "pass1", "user3"))),
    "plain-one-nul": Case("PLAIN", _fixed((b"user1\0pass1", None))),
    "plain-no-initial": Case("PLAIN", _fixed((None, lambda _c: b"\0user1\0pass1"))),
    "plain-empty-user": Case("PLAIN", _fixed(sc.plain("", "pass1"))),
    "login-ok": Case("LOGIN", _fixed(sc.login("user1", "pass1"))),
    "login-wrong": Case("LOGIN", _fixed(sc.login("user1", "nope"))),
    "login-initial-user": Case("LOGIN", _fixed((b"user1", sc.login("user1", "pass1")[1]))),
    "cram-ok": Case("CRAM-MD5", _fixed(sc.cram_md5("user1", "pass1"))),
    "cram-nonascii-ok": Case("CRAM-MD5", _fixed(sc.cram_md5(U2, P2))),
    "cram-wrong": Case("CRAM-MD5", _fixed(sc.cram_md5("user1", "pass2"))),
    "cram-unknown": Case("CRAM-MD5", _fixed(sc.cram_md5("nobody", "pass1"))),
    "cram-no-space": Case("CRAM-MD5", _fixed((None, lambda _c: b"user1"))),
    "digest-ok": Case("DIGEST-MD5", _fixed(sc.digest_md5("user1", "pass1"))),
    "digest-realm-ok": Case("DIGEST-MD5",
                            _fixed(sc.digest_md5("user2", P2, realm="example.org"))),
    "digest-wrong": Case("DIGEST-MD5", _fixed(sc.digest_md5("user1", "pass2"))),
    "digest-unknown-realm": Case("DIGEST-MD5", _fixed(sc.digest_md5("user1", "pass1",
                                                                     realm="x"))),
    "digest-final-resp-ok": Case("DIGEST-MD5", _fixed(sc.digest_md5("user1", "pass1")),
                                 flags=("secured", "final-resp-ok")),
    "digest-garbage": Case("DIGEST-MD5", _fixed((None, lambda _c: b"username=\"x"))),
    "scram1-ok": Case("SCRAM-SHA-1", _fixed(sc.scram("sha1", "user1", "pass1"))),
    "scram256-ok": Case("SCRAM-SHA-256", _fixed(sc.scram("sha256", U2, P2))),
    "scram256-bad-proof": Case("SCRAM-SHA-256",
                               _fixed(sc.scram("sha256", "user1", "pass1", tamper_proof=True))),
    "scram256-unknown": Case("SCRAM-SHA-256", _fixed(sc.scram("sha256", "nobody", "x"))),
    "scram256-cb-p": Case("SCRAM-SHA-256",
                          _fixed(sc.scram("sha256", "user1", "pass1", gs2_flag="p=tls-unique"))),
    "scram256-cb-y": Case("SCRAM-SHA-256",
                          _fixed(sc.scram("sha256", "user1", "pass1", gs2_flag="y"))),
    "scram256-final-resp-ok": Case("SCRAM-SHA-256", _fixed(sc.scram("sha256", "user1", "pass1")),
                                   flags=("secured", "final-resp-ok")),
    "scram1-garbage": Case("SCRAM-SHA-1", _fixed((b"n,,x", None))),
    "apop-ok": Case("APOP", _apop("user1", "pass1")),
    "apop-wrong": Case("APOP", _apop("user1", "pass2")),
    "apop-foreign-challenge": Case("APOP", _apop("user1", "pass1", spoof=True)),
    "anonymous": Case("ANONYMOUS", _fixed((b"trace@example", None))),
    "anonymous-no-initial": Case("ANONYMOUS", _fixed((None, lambda _c: b"x"))),
    "external-no-cert": Case("EXTERNAL", _fixed((b"", None))),
    "external-cert-nopassword-user": Case("EXTERNAL", _fixed((b"", None)),
                                          flags=("secured", "valid-client-cert"),
                                          params=(("cert_username", "user3"),)),
    "external-cert-password-user": Case("EXTERNAL", _fixed((b"", None)),
                                        flags=("secured", "valid-client-cert"),
                                        params=(("cert_username", "user1"),)),
    "xoauth2-ok": Case("XOAUTH2", _fixed(sc.xoauth2("user1", "pass1"))),
    "xoauth2-rejected": Case("XOAUTH2", _fixed(sc.xoauth2("user1", "bad-token"))),
    "xoauth2-missing-token": Case("XOAUTH2", _fixed((b"user=user1\x01\x01", lambda _c: b""))),
    "oauthbearer-ok": Case("OAUTHBEARER", _fixed(sc.oauthbearer("user1", "pass1"))),
    "oauthbearer-rejected": Case("OAUTHBEARER", _fixed(sc.oauthbearer("user1", "bad"))),
    "oauthbearer-cb": Case("OAUTHBEARER", _fixed(
        (b"p=tls-unique,a=user1,\x01auth=Bearer pass1\x01\x01", lambda _c: b"\x01"))),
    "oauthbearer-junk": Case("OAUTHBEARER", _fixed((b"junk", lambda _c: b"\x01"))),
    "oauthbearer-basic": Case("OAUTHBEARER", _fixed(
        (b"n,a=user1,\x01auth=Basic pass1\x01\x01", lambda _c: b"\x01"))),
}


# Mechanisms that need credentials, against users whose passdb holds a doveadm hash: works
# when the hash is of the mechanism's own scheme, fails ("Requested X scheme, but we have
# only Y") otherwise; password mechanisms work against every hash.
def _hashed_cases() -> dict[str, Case]:
    clients: dict[str, Callable[[str, str], tuple[bytes | None, sc.Step | None]]] = {
        "PLAIN": sc.plain,
        "CRAM-MD5": sc.cram_md5,
        "DIGEST-MD5": lambda u, p: sc.digest_md5(u.split("@")[0], p, realm=u.split("@")[1]),
        "SCRAM-SHA-1": lambda u, p: sc.scram("sha1", u, p),
        "SCRAM-SHA-256": lambda u, p: sc.scram("sha256", u, p),
    }
    cases = {}
    for user, (_scheme, password) in HASHED.items():
        for mechanism, client in clients.items():
            name = f"hashed-{user.split('@')[0]}-{mechanism.lower()}"
            cases[name] = Case(mechanism, _fixed(client(user, password)))
    cases["hashed-cram-wrong-password"] = Case(
        "CRAM-MD5", _fixed(sc.cram_md5("cram@example.org", "wrong")))
    cases["hashed-scram256-wrong-password"] = Case(
        "SCRAM-SHA-256", _fixed(sc.scram("sha256", "scram256@example.org", "wrong")))
    return cases


CASES |= _hashed_cases()


@dataclass(frozen=True)
class Outcome:
    result: str
    user: str | None
    challenges: tuple[bytes, ...]
    final_resp: bool


# Challenges that are random per run are compared by shape only.
def _shape(mechanism: str, challenge: bytes) -> bytes:
    if mechanism == "CRAM-MD5":
        return b"<random.time@host>" if challenge.startswith(b"<") else challenge
    if mechanism == "DIGEST-MD5" and b"nonce=" in challenge:
        return b",".join(p.split(b"=")[0] for p in challenge.split(b","))
    if mechanism.startswith("SCRAM") and challenge.startswith(b"r="):
        return b"r=,s=,i=" if challenge.endswith(b",i=4096") else challenge
    if mechanism.startswith("SCRAM") and challenge.startswith(b"v="):
        return b"v="
    if mechanism == "DIGEST-MD5" and challenge.startswith(b"rspauth="):
        return b"rspauth="
    return challenge


def run(client: AuthClientBase, case: Case) -> Outcome:
    initial, step = case.exchange(client.handshake)
    event, challenges = client.conversation(case.mechanism, initial, step, flags=case.flags,
                                            params=dict(case.params))
    shapes = tuple(_shape(case.mechanism, c) for c in challenges)
    if isinstance(event, ac.Success):
        return Outcome("OK", event.user, shapes, "resp" in event.fields)
    if isinstance(event, ac.Failure):
        return Outcome("FAIL", event.user, shapes, False)
    return Outcome(type(event).__name__, None, shapes, False)


@pytest.fixture
def cote_server(hashed_users: dict[str, str]) -> InProcessAuthServer:
    """One cote auth-client connection (server end) with the oracle's users and hashes."""
    users = {u: "{PLAIN}" + p for u, p in USERS.items()} | hashed_users
    return InProcessAuthServer(users, MECHANISMS.upper().split(),
                               nopassword=frozenset(PASSWD_EXTRA))


_MECH_NAMES = "|".join(re.escape(m.lower()) for m in MECHANISMS.split())
MECH_LOG = re.compile(rf"auth: Info: ((?:{_MECH_NAMES})\(.*?\): .*)$")


def mechanism_log_lines(oracle: DovecotOracle, offset: int, *, expect: int) -> list[str]:
    """auth_verbose lines of the mechanisms (not the passdb's) written after ``offset``:
    waits up to 2 s for ``expect`` of them and a moment for any extra one."""
    now = time.monotonic()
    settle, deadline = now + 0.05, now + 2.0
    while True:
        with open(oracle.log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
        lines = [m.group(1) for m in map(MECH_LOG.search, text.splitlines()) if m]
        now = time.monotonic()
        if (len(lines) >= expect and now >= settle) or now > deadline:
            return lines
        time.sleep(0.02)


@pytest.mark.parametrize("name", list(CASES))
def test_same_outcome_as_dovecot(name: str, auth_oracle: DovecotOracle,
                                 cote_server: InProcessAuthServer) -> None:
    case = CASES[name]
    offset = auth_oracle.log_path.stat().st_size
    dovecot = AuthClientSocket(auth_oracle.base_dir / "auth-client")
    try:
        expected = run(dovecot, case)
    finally:
        dovecot.close()
    ours = run(InProcessAuthClient(cote_server), case)
    assert ours == expected
    assert expected.result in ("OK", "FAIL")
    # The reason logged with auth_verbose is the same too ("cram-md5(user1): Password mismatch").
    assert mechanism_log_lines(auth_oracle, offset, expect=len(cote_server.log)) == \
        cote_server.log


def test_handshake_advertises_the_same_mechanisms_and_flags(
        auth_oracle: DovecotOracle, cote_server: InProcessAuthServer) -> None:
    dovecot = AuthClientSocket(auth_oracle.base_dir / "auth-client")
    dovecot.close()
    ours = InProcessAuthClient(cote_server)
    assert [(m.name, m.flags) for m in ours.handshake.mechanisms] == \
        [(m.name, m.flags) for m in dovecot.handshake.mechanisms]
    assert len(dovecot.handshake.cookie) == 16 and dovecot.handshake.spid > 0
