"""imap-login's pre-auth dialogue, against transcripts recorded from Dovecot 2.3.19.

The auth daemon's answers are the inputs (challenge, failed); everything the client sees must
be Dovecot's bytes.
"""

from __future__ import annotations

from base64 import b64encode

from cote.auth.protocol.auth_client import MechanismInfo, MechFlag
from cote.login.actions import AuthCancel, AuthContinue, Authenticate, Disconnect, Reply, StartTls
from cote.login.imap import ImapFrontend, ImapLoginSettings

MECHS = (MechanismInfo("PLAIN", MechFlag.PLAINTEXT), MechanismInfo("LOGIN", MechFlag.PLAINTEXT),
         MechanismInfo("CRAM-MD5", MechFlag.DICTIONARY))
SECURE_CAPS = (b"IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS "
               b"AUTH=PLAIN AUTH=LOGIN AUTH=CRAM-MD5")
INSECURE_CAPS = b"IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ LOGINDISABLED AUTH=CRAM-MD5"


def frontend(*, secured: bool = True, tls: bool = True) -> ImapFrontend:
    return ImapFrontend(ImapLoginSettings("Dovecot (Debian) ready.", MECHS, secured=secured,
                                          disable_plaintext_auth=True, tls_available=tls))


def out(actions: list[object]) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, Reply))


def test_greeting_and_capability() -> None:
    f = frontend()
    assert f.greeting() == b"* OK [CAPABILITY " + SECURE_CAPS + b"] Dovecot (Debian) ready.\r\n"
    assert out(f.feed(b"a CAPABILITY\r\n")) == (
        b"* CAPABILITY " + SECURE_CAPS + b"\r\na OK Pre-login capabilities listed, "
        b"post-login capabilities have more.\r\n")
    assert f.handoff_extra()["imap_capability_sent"] == "1"


def test_simple_commands() -> None:
    f = frontend()
    assert out(f.feed(b"b NOOP\r\n")) == b"b OK NOOP completed.\r\n"
    assert out(f.feed(b'c ID ("name" "test")\r\n')) == \
        b'* ID ("name" "Dovecot")\r\nc OK ID completed.\r\n'
    assert out(f.feed(b"d ID NIL\r\n")) == b'* ID ("name" "Dovecot")\r\nd OK ID completed.\r\n'
    assert out(f.feed(b"e ENABLE CONDSTORE\r\n")) == \
        b"* ENABLED\r\ne OK ENABLE ignored in non-authenticated state.\r\n"
    assert out(f.feed(b"f SELECT INBOX\r\n")) == b"f BAD Error in IMAP command received by server.\r\n"
    assert out(f.feed(b"h LOGIN\r\n")) == b"h BAD Error in IMAP command received by server.\r\n"


def test_login_and_authenticate_become_sasl_requests() -> None:
    f = frontend()
    actions = f.feed(b"g LOGIN user1 {5}\r\npass1\r\nX NOOP\r\n")
    assert actions == [Authenticate("PLAIN", b"\0user1\0pass1")]
    assert out(f.failed(None, temporary=False)) == \
        b"g NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    assert out(f.resume()) == b"X OK NOOP completed.\r\n"
    assert out(f.feed(b"i AUTHENTICATE FOO\r\n")) == \
        b"i NO [ALERT] Unsupported authentication mechanism.\r\n"
    assert f.feed(b"j AUTHENTICATE PLAIN\r\n") == [Authenticate("PLAIN", None)]
    assert out(f.challenge(b"")) == b"+ \r\n"
    assert f.feed(b"*\r\n") == [AuthCancel(), Reply(b"j BAD Authentication aborted by client.\r\n")]
    f.feed(b"k AUTHENTICATE PLAIN\r\n")
    f.challenge(b"")
    assert f.feed(b"!!!\r\n") == [AuthCancel(), Reply(b"k NO [ALERT] Invalid base64 in response\r\n")]
    f.feed(b"l AUTHENTICATE LOGIN\r\n")
    f.challenge(b"Username:")
    assert f.feed(b64encode(b"user1") + b"\r\n") == [AuthContinue(b"user1")]


def test_insecure_connection_refuses_plaintext() -> None:
    f = frontend(secured=False, tls=False)
    assert f.greeting() == b"* OK [CAPABILITY " + INSECURE_CAPS + b"] Dovecot (Debian) ready.\r\n"
    assert out(f.feed(b"b LOGIN user1 pass1\r\n")) == (
        b"* BAD [ALERT] Plaintext authentication not allowed without SSL/TLS, but your client "
        b"did it anyway. If anyone was listening, the password was exposed.\r\n"
        b"b NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) "
        b"connections.\r\n")
    assert out(f.feed(b"c AUTHENTICATE PLAIN AHVzZXIxAHBhc3Mx\r\n")) == \
        b"c NO [PRIVACYREQUIRED] Plaintext authentication disabled.\r\n"
    assert out(f.feed(b"d AUTHENTICATE LOGIN\r\n")) == \
        b"d NO [PRIVACYREQUIRED] Plaintext authentication disabled.\r\n"
    assert out(f.feed(b"e STARTTLS\r\n")) == b"e BAD TLS support isn't enabled.\r\n"
    assert f.feed(b"f AUTHENTICATE CRAM-MD5\r\n") == [Authenticate("CRAM-MD5", None)]


def test_starttls_and_logout() -> None:
    f = frontend()
    assert f.feed(b"a STARTTLS\r\n") == [Reply(b"a OK Begin TLS negotiation now.\r\n"), StartTls()]
    f.tls_started()
    assert b"STARTTLS" not in f.capabilities().encode()
    actions = frontend().feed(b"g LOGOUT\r\n")
    assert actions[0] == Reply(b"* BYE Logging out\r\ng OK Logout completed.\r\n")
    assert isinstance(actions[1], Disconnect)


def test_pipelined_bytes_after_login_are_handed_over() -> None:
    f = frontend()
    f.feed(b"a LOGIN u p\r\nb SELECT INBOX\r\nc FETCH 1 FLAGS\r\n")
    assert f.take_buffered() == b"b SELECT INBOX\r\nc FETCH 1 FLAGS\r\n"
    assert f.handoff_extra() == {"imap_tag": "a", "imap_capability_sent": ""}
