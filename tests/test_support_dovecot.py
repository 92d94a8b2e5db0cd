"""The oracle fixture itself: Dovecot answers IMAP and POP3 logins for the generated users."""

import imaplib
import poplib

from tests.support.dovecot import DovecotOracle


def test_oracle_serves_imap_login_and_append(dovecot: DovecotOracle) -> None:
    imap = imaplib.IMAP4("127.0.0.1", dovecot.ports["imap"])
    imap.login("user1", "pass1")
    typ, _ = imap.append("INBOX", "", None, b"Subject: hi\r\n\r\nbody\r\n")
    assert typ == "OK"
    typ, data = imap.select("INBOX")
    assert typ == "OK" and int(data[0]) >= 1
    imap.logout()
    assert (dovecot.user_maildir("user1") / "dovecot-uidlist").exists()


def test_oracle_rejects_wrong_password(dovecot: DovecotOracle) -> None:
    pop = poplib.POP3("127.0.0.1", dovecot.ports["pop3"])
    pop.user("user2")
    try:
        pop.pass_("wrong")
    except poplib.error_proto as e:
        assert b"-ERR" in e.args[0]
    else:
        raise AssertionError("wrong password accepted")
    finally:
        pop.close()
