"""Every challenge-response mechanism over the real sockets: the same conversation to cote's
auth daemon and to Dovecot's (same passwd-files: plaintext users, doveadm-hashed users with
stored CRAM-MD5/DIGEST-MD5/SCRAM keys) gives the same CONT challenges and the same final
line, fields included. Only what is random by nature is masked: nonces, CRAM-MD5's challenge,
SCRAM's salt and server signature, DIGEST-MD5's rspauth.

The in-process tests (tests/auth/test_mechanisms_dovecot.py) drive the mechanism state
machines; these drive the daemon: the handshake's SPID/CUID (APOP), the passdb chain over two
files, the reply fields, EXTERNAL's request fields (``valid-client-cert``, ``cert_username``).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cote.auth.protocol import auth_client as ac
from tests.auth.auth_socket import AuthClientSocket
from tests.auth.conftest import HASHED, MECHANISMS, PASSWD_EXTRA, USERS, doveadm_hash
from tests.auth.test_mechanisms_dovecot import CASES, Case, _shape
from tests.authd.pairs import oracle_pair
from tests.authd.test_daemon_vs_dovecot import Pair

# The OAuth mechanisms need an oauth2 passdb (tests/authd/test_oauth2.py); these use the rest.
NAMES = [n for n, c in CASES.items() if c.mechanism not in ("XOAUTH2", "OAUTHBEARER")]
CONF = (f"auth_mechanisms = {MECHANISMS}\nauth_failure_delay = 0\nauth_verbose = yes\n"
        "auth_ssl_username_from_cert = yes\nauth_anonymous_username = anon\n")


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    def conf(d: Path) -> str:
        hashed = d / "hashed-users"
        hashed.write_text("".join(f"{u}:{doveadm_hash(s, p, u)}\n"
                                  for u, (s, p) in HASHED.items()))
        return CONF + f"passdb {{\n  driver = passwd-file\n  args = {hashed}\n}}\n"

    with oracle_pair(USERS, conf, mechanisms=MECHANISMS, passwd_extra=PASSWD_EXTRA) as pair:
        yield pair


def _mask(mechanism: str, fields: dict[str, str]) -> dict[str, str]:
    out = dict(fields)
    if "resp" in out:  # final server data: SCRAM's v=, DIGEST-MD5's rspauth=
        out["resp"] = _shape(mechanism, base64.b64decode(out["resp"])).decode()
    return out


def transcript(path: str, case: Case) -> list[str]:
    """The challenges (masked) and the final line, as text."""
    client = AuthClientSocket(path)
    try:
        initial, step = case.exchange(client.handshake)
        event, challenges = client.conversation(case.mechanism, initial, step,
                                                flags=case.flags, params=dict(case.params))
    finally:
        client.close()
    lines = [f"CONT {_shape(case.mechanism, c)!r}" for c in challenges]
    if isinstance(event, ac.Success):
        fields = _mask(case.mechanism, dict(event.fields))
        lines.append(f"OK user={event.user} {list(fields.items())}")
    elif isinstance(event, ac.Failure):
        lines.append(f"FAIL {list(event.fields.items())}")
    else:
        lines.append(repr(event))
    return lines


@pytest.mark.parametrize("name", NAMES)
def test_same_conversation_as_dovecot(pair: Pair, name: str) -> None:
    case = CASES[name]
    theirs = transcript(str(pair.dovecot.base_dir / "auth-client"), case)
    ours = transcript(str(pair.cote.socket_path("auth-client")), case)
    assert ours == theirs
    assert re.match(r"(OK|FAIL) ", theirs[-1])


def _plain(user: str, password: str) -> tuple[bytes | None, None]:
    return f"\0{user}\0{password}".encode(), None


CERT = ("secured", "valid-client-cert")
# auth_ssl_username_from_cert = yes: the certificate's name overrides the mechanism's.
CERT_CASES = {
    "plain, certificate names another user": Case(
        "PLAIN", lambda _hs: _plain("user1", "pass1"), CERT, (("cert_username", "user3"),)),
    "plain, certificate names the same user": Case(
        "PLAIN", lambda _hs: _plain("user1", "pass1"), CERT, (("cert_username", "user1"),)),
    "plain, certificate names an unknown user": Case(
        "PLAIN", lambda _hs: _plain("user1", "pass1"), CERT, (("cert_username", "ghost"),)),
    "external with an authzid": Case(
        "EXTERNAL", lambda _hs: (b"user1", None), CERT, (("cert_username", "user3"),)),
}


@pytest.mark.parametrize("name", list(CERT_CASES))
def test_certificate_user_names_match(pair: Pair, name: str) -> None:
    case = CERT_CASES[name]
    theirs = transcript(str(pair.dovecot.base_dir / "auth-client"), case)
    ours = transcript(str(pair.cote.socket_path("auth-client")), case)
    assert ours == theirs


REQUIRE_CONF = ("auth_failure_delay = 0\n"
                "auth_ssl_require_client_cert = yes\n")
# auth_ssl_require_client_cert = yes, auth_ssl_username_from_cert = no.
REQUIRE_CASES = {
    "plain without a certificate": Case("PLAIN", lambda _hs: _plain("user1", "pass1"),
                                        ("secured",)),
    "plain with a valid certificate": Case("PLAIN", lambda _hs: _plain("user1", "pass1"),
                                           CERT, (("cert_username", "user3"),)),
    "external, name not taken from the certificate": Case(
        "EXTERNAL", lambda _hs: (b"", None), CERT, (("cert_username", "user3"),)),
}


@pytest.fixture(scope="module")
def require_pair() -> Iterator[Pair]:
    with oracle_pair(USERS, REQUIRE_CONF, mechanisms="plain external",
                     passwd_extra=PASSWD_EXTRA) as pair:
        yield pair


@pytest.mark.parametrize("name", list(REQUIRE_CASES))
def test_required_client_certificate_matches(require_pair: Pair, name: str) -> None:
    case = REQUIRE_CASES[name]
    theirs = transcript(str(require_pair.dovecot.base_dir / "auth-client"), case)
    ours = transcript(str(require_pair.cote.socket_path("auth-client")), case)
    assert ours == theirs
