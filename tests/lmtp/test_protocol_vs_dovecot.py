"""The LMTP dialogue answers as Dovecot 2.3's lmtp does, byte for byte.

The same scripts (pipelined commands, DATA and BDAT, malformed input) go to a real Dovecot
LMTP listener and to :class:`LmtpProtocol`. The protocol's inputs from the outside world are
the recipient checks (here: the users both servers know) and the delivery results (Saved,
with the session id Dovecot used, since ids are random); everything else must be identical.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest

from cote.mailproc.lmtp.protocol import (
    CheckRecipient,
    Close,
    DataChunk,
    DataEnd,
    LmtpProtocol,
    MailFrom,
    Reply,
    Reset,
    saved_reply,
)
from tests.support.dovecot import DovecotOracle

USERS = {"user1", "user2"}
SESSION_ID = re.compile(rb"<(\S+)> ([A-Za-z0-9+/]+)((?::T\d+)?(?::R\d+)?) Saved")

SCRIPTS: dict[str, list[bytes]] = {
    "pipelined two recipients": [
        b"LHLO client.example\r\nMAIL FROM:<a@b>\r\nRCPT TO:<nosuch>\r\nRCPT TO:<user1>\r\n"
        b"RCPT TO:<user2>\r\nDATA\r\n",
        b"Subject: t\r\n\r\nhello\r\n..dot\r\n.\r\n",
        b"QUIT\r\n",
    ],
    "mail before lhlo and errors": [
        b"HELO x\r\nMAIL FROM:<a@b>\r\nLHLO c\r\nRCPT TO:<user1>\r\n",
        b"MAIL FROM:<a@b> SIZE=100\r\nMAIL FROM:<a@b> BODY=FOO\r\nMAIL FROM:<a@b>  BODY=7BIT\r\n",
        b"MAIL FROM:<c@d> BODY=8BITMIME\r\nMAIL FROM:<x@y>\r\nRCPT TO:user1\r\n",
        b"RCPT TO:<>\r\nRCPT TO: <user1>\r\nRCPT TO:<user1@>\r\nRCPT TO:<user1\r\n",
        b"RCPT TO:<user1> NOTIFY=NEVER\r\nRCPT TO:<User1>\r\nDATA x\r\nVRFY u\r\nNOOP x\r\n",
        b"RSET x\r\nRSET\r\nDATA\r\nMAIL FROM:<>\r\nDATA\r\nQUIT x\r\nAUTH PLAIN\r\n",
        b"STARTTLS\r\n\r\n NOOP\r\nNOOP\tx\r\nLHLO\r\nQUIT\r\n",
    ],
    "bdat chunks": [
        b"LHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<user1>\r\nBDAT 5\r\nSubj:",
        b"BDAT 0\r\nBDAT x\r\nBDAT 1 FOO\r\nBDAT 12 LAST\r\n x\r\n\r\nbo",
        b"dy\r\nQUIT\r\n",
    ],
    "three transactions": [
        b"LHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<user1>\r\nDATA\r\nx\r\n.\r\n",
        b"MAIL FROM:<a@b>\r\nRCPT TO:<user1>\r\nRCPT TO:<bad>\r\nRCPT TO:<user2>\r\n",
        b"BDAT 3 LAST\r\nyz\n",
        b"RSET\r\nMAIL FROM:<>\r\nRCPT TO:<user2>\r\nDATA\r\n.\r\nQUIT\r\n",
    ],
    "data split at awkward places": [
        b"LHLO c\r\nMAIL FROM:<s@x>\r\nRCPT TO:<user2>\r\nDATA\r\n",
        b"A: b\r\n\r\n.", b".x\r\n", b".", b"\r", b"\n",
        b"LHLO again\r\nQUIT\r\n",
    ],
}


@pytest.fixture(scope="module")
def dovecot_lmtp() -> Iterator[DovecotOracle]:
    with DovecotOracle(users=dict.fromkeys(USERS, "x")) as dc:
        yield dc


def read_available(sock: socket.socket) -> bytes:
    """Everything the server sends until it pauses (LMTP replies are small)."""
    out = bytearray()
    sock.settimeout(1.0)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            out += data
            sock.settimeout(0.3)
    except TimeoutError:
        pass
    return bytes(out)


def run_cote(script: list[bytes], session_ids: list[bytes]) -> tuple[bytes, list[bytes]]:
    proto = LmtpProtocol("vm", "Dovecot (Debian) ready.")
    out = [proto.greeting()]
    bodies: list[bytes] = []
    body = bytearray()
    ids = iter(session_ids)

    def drive(events: list[object]) -> None:
        nonlocal body
        for event in events:
            if isinstance(event, Reply):
                out.append(event.data)
            elif isinstance(event, CheckRecipient):
                # The userdb's answer; Debian's auth_username_format = %Lu lowercases names.
                drive(proto.recipient_checked(event.address.localpart.lower() in USERS))
            elif isinstance(event, DataChunk):
                body += event.data
            elif isinstance(event, DataEnd):
                bodies.append(bytes(body))
                body = bytearray()
                sid = next(ids).decode()
                drive(proto.delivered([saved_reply(a, proto.delivery_id(sid, i))
                                       for i, a in enumerate(event.recipients)]))
            else:
                assert isinstance(event, MailFrom | Reset | Close)

    for chunk in script:
        drive(proto.receive_data(chunk))
    return b"".join(out), bodies


@pytest.mark.oracle
@pytest.mark.parametrize("name", list(SCRIPTS))
def test_script_matches_dovecot(dovecot_lmtp: DovecotOracle, name: str) -> None:
    sock = socket.create_connection(("127.0.0.1", dovecot_lmtp.ports["lmtp"]))
    theirs = bytearray(read_available(sock))
    for chunk in SCRIPTS[name]:
        sock.sendall(chunk)
        theirs += read_available(sock)
    sock.close()
    greeting_host = theirs.split(b" ", 2)[1]
    theirs = bytes(theirs).replace(greeting_host, b"vm")  # Dovecot greets with its hostname
    session_ids = [m.group(2) for m in SESSION_ID.finditer(theirs)]
    ours, _ = run_cote(SCRIPTS[name], session_ids)
    assert ours == theirs


def test_data_is_unstuffed_and_streamed_in_chunks() -> None:
    proto = LmtpProtocol("h", "ready")
    proto.receive_data(b"LHLO c\r\nMAIL FROM:<>\r\n")
    [_check] = [e for e in proto.receive_data(b"RCPT TO:<u>\r\nDATA\r\n")
               if isinstance(e, CheckRecipient)]
    events = proto.recipient_checked(True)
    assert events == [Reply(b"250 2.1.5 OK\r\n"), Reply(b"354 OK\r\n")]
    message = b"A: b\r\n\r\n" + b"..x\r\n" * 20000 + b"end"
    chunks = []
    for i in range(0, len(message), 4096):
        chunks += proto.receive_data(message[i:i + 4096])
    end = proto.receive_data(b"\r\n.\r\n")
    data = b"".join(e.data for e in chunks + end if isinstance(e, DataChunk))
    assert data == b"A: b\r\n\r\n" + b".x\r\n" * 20000 + b"end\r\n"
    assert len([e for e in chunks if isinstance(e, DataChunk)]) > 10  # streamed, not buffered
    assert isinstance(end[-1], DataEnd) and [str(a) for a in end[-1].recipients] == ["u"]


def test_pipelined_commands_wait_for_the_recipient_check() -> None:
    proto = LmtpProtocol("h", "ready")
    events = proto.receive_data(b"LHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a>\r\nRCPT TO:<b>\r\nDATA\r\n")
    assert isinstance(events[-1], CheckRecipient) and str(events[-1].address) == "a"
    events = proto.recipient_checked(False, b"451 4.3.0 <a> Temporary internal error\r\n")
    assert events[0] == Reply(b"451 4.3.0 <a> Temporary internal error\r\n")
    assert isinstance(events[-1], CheckRecipient) and str(events[-1].address) == "b"
    assert proto.recipient_checked(True)[-1] == Reply(b"354 OK\r\n")
