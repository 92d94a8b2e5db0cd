"""pop3-login's pre-auth dialogue, against transcripts recorded from Dovecot 2.3.19.

Each transcript is what Dovecot's pop3-login answered to the same lines (the auth daemon's
answers are the inputs of these tests: the login machine's job is to turn them into POP3).
"""

from __future__ import annotations

from base64 import b64encode

import pytest

from cote.login.actions import AuthCancel, AuthContinue, Authenticate, Disconnect, Reply, StartTls
from cote.login.pop3_dialogue import Mechanism, Pop3Login, Pop3LoginSettings

MECHS = (Mechanism("PLAIN", plaintext=True), Mechanism("LOGIN", plaintext=True),
         Mechanism("CRAM-MD5"))


def login(*, secured: bool = True, tls: bool = False, apop: str | None = None) -> Pop3Login:
    mechs = (*MECHS, Mechanism("APOP", private=True)) if apop else MECHS
    return Pop3Login(Pop3LoginSettings("Dovecot (Debian) ready.", mechs, secured=secured,
                                       tls_available=tls, apop_timestamp=apop))


def replies(actions: list[object]) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, Reply))


def test_greeting_carries_the_apop_timestamp_only_when_apop_is_enabled() -> None:
    assert login().greeting() == b"+OK Dovecot (Debian) ready.\r\n"
    stamp = "<519f.2.6b023b23.k996zOZCMqSBVO55uiMVWA==@vm>"
    assert login(apop=stamp).greeting() == f"+OK Dovecot (Debian) ready. {stamp}\r\n".encode()


def test_capa_on_a_secured_connection_with_tls_available() -> None:
    m = login(tls=True)
    assert replies(m.handle_line(b"CAPA")) == (
        b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n"
        b"STLS\r\nUSER\r\nSASL PLAIN LOGIN CRAM-MD5\r\n.\r\n")
    assert replies(m.handle_line(b"AUTH")) == b"+OK\r\nPLAIN\r\nLOGIN\r\nCRAM-MD5\r\n.\r\n"


def test_insecure_connection_hides_and_refuses_plaintext() -> None:
    m = login(secured=False, tls=True)
    assert replies(m.handle_line(b"CAPA")) == (
        b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n"
        b"STLS\r\nSASL CRAM-MD5\r\n.\r\n")
    assert replies(m.handle_line(b"AUTH")) == b"+OK\r\nCRAM-MD5\r\n.\r\n"
    refused = (b"-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) "
               b"connections.\r\n")
    assert replies(m.handle_line(b"USER user1")) == refused
    assert replies(m.handle_line(b"PASS pass1")) == refused
    disabled = b"-ERR [AUTH] Plaintext authentication disabled.\r\n"
    assert replies(m.handle_line(b"AUTH PLAIN AHVzZXIxAHBhc3Mx")) == disabled
    assert replies(m.handle_line(b"AUTH LOGIN")) == disabled


def test_stls_with_and_without_tls() -> None:
    actions = login(tls=True).handle_line(b"STLS x")
    assert actions == [Reply(b"+OK Begin TLS negotiation now.\r\n"), StartTls()]
    assert replies(login().handle_line(b"STLS")) == b"-ERR TLS support isn't enabled.\r\n"


def test_user_pass_becomes_a_plain_request() -> None:
    m = login()
    assert replies(m.handle_line(b"PASS x")) == b"-ERR No username given.\r\n"
    assert replies(m.handle_line(b"USER user1")) == b"+OK\r\n"
    assert m.handle_line(b"PASS p\xc3\xa4ss 1") == [Authenticate("PLAIN", b"\0user1\0p\xc3\xa4ss 1")]
    assert m.handle_line(b"CAPA") == []  # pipelined lines wait for the auth answer
    assert replies(m.failed()) == b"-ERR [AUTH] Authentication failed.\r\n"
    assert replies(m.failed("Temporary failure", temporary=True)) == \
        b"-ERR [SYS/TEMP] Temporary failure\r\n"


def test_sasl_exchange_cancel_and_bad_base64() -> None:
    m = login()
    assert m.handle_line(b"AUTH FOO") == [
        Reply(b"-ERR [AUTH] Unsupported authentication mechanism.\r\n")]
    assert m.handle_line(b"AUTH PLAIN") == [Authenticate("PLAIN", None)]
    assert m.challenge(b"") == [Reply(b"+ \r\n")]
    assert m.handle_line(b"*") == [AuthCancel(), Reply(b"-ERR Authentication aborted by client.\r\n")]
    m.handle_line(b"AUTH PLAIN")
    m.challenge(b"")
    assert m.handle_line(b"!!!") == [AuthCancel(),
                                     Reply(b"-ERR [AUTH] Invalid base64 in response\r\n")]
    assert m.handle_line(b"AUTH PLAIN =") == [Authenticate("PLAIN", b"")]
    m.failed()
    assert m.handle_line(b"AUTH LOGIN") == [Authenticate("LOGIN", None)]
    assert m.challenge(b"Username:") == [Reply(b"+ VXNlcm5hbWU6\r\n")]
    assert m.handle_line(b64encode(b"user1") + b"\r") == [AuthContinue(b"user1")]


def test_apop_parameters() -> None:
    stamp = "<1.2.3@vm>"
    m = login(apop=stamp)
    assert replies(m.handle_line(b"AUTH")) == b"+OK\r\nPLAIN\r\nLOGIN\r\nCRAM-MD5\r\n.\r\n"
    for bad in (b"APOP", b"APOP x", b"APOP a b"):
        assert replies(m.handle_line(bad)) == b"-ERR Invalid parameters.\r\n"
    digest = b"0123456789abcdef0123456789abcdef"
    assert m.handle_line(b"APOP user1 " + digest) == [
        Authenticate("APOP", stamp.encode() + b"\0user1\0" + digest)]
    # Without APOP enabled the command does not exist.
    assert replies(login().handle_line(b"APOP a " + digest)) == b"-ERR Unknown command.\r\n"


def test_fourth_unknown_command_disconnects_and_apop_errors_do_not_count() -> None:
    m = login(apop="<1@vm>")
    for line in (b"APOP", b"APOP x", b"X1", b"X2", b"X3"):
        assert m.handle_line(line)[0] != Reply(b"-ERR Too many invalid bad commands.\r\n")
    actions = m.handle_line(b"X4")
    assert actions[0] == Reply(b"-ERR Too many invalid bad commands.\r\n")
    assert isinstance(actions[1], Disconnect)


@pytest.mark.parametrize(("line", "aborted"), [(b"A" * 600, False), (b"B" * 1100, True),
                                               (b"USER " + b"u" * 1500, True),
                                               (b"AUTH PLAIN " + b"A" * 3000, False)])
def test_line_limits(line: bytes, aborted: bool) -> None:
    actions = login().handle_line(line)
    assert (actions[0] == Reply(b"-ERR Input buffer full, aborting\r\n")) is aborted


def test_quit() -> None:
    actions = login().handle_line(b"QUIT")
    assert actions[0] == Reply(b"+OK Logging out\r\n")
    assert actions[1] == Disconnect("Aborted login by logging out")
