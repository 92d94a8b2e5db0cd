"""cote's protocol codecs against Dovecot's real auth-client and auth-master sockets.

The client codecs must parse everything Dovecot says; the server codecs must answer the
same bytes Dovecot answers where the protocol alone decides, and drop the same peers.
"""

from __future__ import annotations

import os
import socket

import pytest

from cote.auth import mechanisms as mech
from cote.auth.protocol import auth_client as ac
from cote.auth.protocol import auth_master as am
from tests.auth.auth_socket import AuthClientSocket, AuthMasterSocket
from tests.auth.conftest import MECHANISMS
from tests.support.dovecot import DovecotOracle
from tests.support.env import mail_user

pytestmark = pytest.mark.oracle


def raw_exchange(path: str, data: bytes, *, handshake: bytes = b"") -> bytes:
    """Send ``handshake + data``; what the server says until a reply, EOF or a timeout."""
    replies = (b"FAIL\t", b"OK\t", b"NOTFOUND\t", b"USER\t")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    out = b""
    try:
        s.sendall(handshake + data)
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return out + b"<closed>"
            except TimeoutError:
                return out + b"<timeout>"
            if not chunk:
                return out + b"<closed>"
            out += chunk
            if any(line.startswith(replies) for line in out.split(b"\n")[:-1]):
                return out
    finally:
        s.close()


def strip_greeting(out: bytes) -> bytes:
    return out.split(b"DONE\n", 1)[1] if b"DONE\n" in out else out


def test_client_codec_parses_dovecots_handshake(auth_oracle: DovecotOracle) -> None:
    client = AuthClientSocket(auth_oracle.base_dir / "auth-client")
    client.close()
    hs = client.handshake
    assert (hs.major, hs.minor) == (1, 2)
    assert hs.spid > 0 and hs.cuid > 0 and len(hs.cookie) == 16
    names = [m.name for m in hs.mechanisms]
    assert names == [n.upper() for n in MECHANISMS.split()]
    flags = {m.name: m.flags for m in hs.mechanisms}
    assert flags["CRAM-MD5"] == ac.MechFlag.DICTIONARY | ac.MechFlag.ACTIVE
    assert flags["ANONYMOUS"] == ac.MechFlag.ANONYMOUS
    # cote's server handshake for the same mechanisms parses to the same list.
    ours = ac.ClientConnection()
    [event] = ours.feed(ac.ServerConnection.handshake(mech.advertised(names), spid=1, cuid=2,
                                                      cookie=b"\0" * 16))
    assert isinstance(event, ac.ServerHandshake) and event.mechanisms == hs.mechanisms


def test_server_handshake_is_byte_identical(auth_oracle: DovecotOracle) -> None:
    """Postfix's order: the client speaks first, then reads the whole greeting to DONE."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(auth_oracle.base_dir / "auth-client"))
    try:
        s.sendall(b"VERSION\t1\t0\nCPID\t%d\n" % (os.getpid() + 4000))
        raw = b""
        while not raw.endswith(b"DONE\n"):
            chunk = s.recv(65536)
            assert chunk, raw
            raw += chunk
    finally:
        s.close()
    [hs] = ac.ClientConnection().feed(raw)
    assert isinstance(hs, ac.ServerHandshake)
    ours = ac.ServerConnection.handshake(mech.advertised(m.name for m in hs.mechanisms),
                                         spid=hs.spid, cuid=hs.cuid, cookie=hs.cookie)
    assert ours == raw


def test_plain_ok_and_fail_replies_parse(auth_oracle: DovecotOracle) -> None:
    client = AuthClientSocket(auth_oracle.base_dir / "auth-client")
    try:
        ok, _ = client.conversation("PLAIN", b"\0user1\0pass1", None)
        assert ok == ac.Success(1, "user1", {})
        fail, _ = client.conversation("PLAIN", b"\0user1\0wrong", None)
        assert isinstance(fail, ac.Failure) and fail.id == 2 and fail.user == "user1"
    finally:
        client.close()


HELLO = b"VERSION\t1\t2\nCPID\t%d\n"


@pytest.mark.parametrize("line", [
    b"AUTH\t1\tPLAIN\tservice=imap\tno-penalty\tresp=!!!\n",
    b"CONT\t5\tAAAA\n",
])
def test_protocol_level_replies_are_byte_identical(line: bytes, auth_oracle: DovecotOracle) -> None:
    theirs = strip_greeting(raw_exchange(str(auth_oracle.base_dir / "auth-client"), line,
                                         handshake=HELLO % (os.getpid() + 1000)))
    conn = ac.ServerConnection(MECHANISMS.upper().split())
    conn.feed(HELLO % 1)
    [event] = conn.feed(line)
    assert isinstance(event, ac.Reply)
    assert event.data == theirs


@pytest.mark.parametrize("line", [
    b"AUTH\t1\tFOO\tservice=imap\n",
    b"AUTH\t1\tPLAIN\n",
    b"AUTH\t0\tPLAIN\tservice=imap\n",
    b"AUTH\t1\tPLAIN\tservice=imap\tresp=AA==\tlip=127.0.0.1\n",
    b"AUTH\t1\tPLAIN\tservice=imap\nAUTH\t1\tPLAIN\tservice=imap\n",
    b"FOO\tbar\n",
    b"AUTH\t1\tPLAIN\tservice=imap\tresp=" + b"A" * (16384 - 31) + b"\n",
])
def test_same_violations_drop_the_connection(line: bytes, auth_oracle: DovecotOracle) -> None:
    theirs = strip_greeting(raw_exchange(str(auth_oracle.base_dir / "auth-client"), line,
                                         handshake=HELLO % (os.getpid() + 2000)))
    assert theirs.endswith(b"<closed>")
    conn = ac.ServerConnection(MECHANISMS.upper().split())
    conn.feed(HELLO % 1)
    events = conn.feed(line)
    assert isinstance(events[-1], ac.Disconnect) and conn.closed


def test_crlf_lines_are_accepted_by_both(auth_oracle: DovecotOracle) -> None:
    hello = b"VERSION\t1\t2\r\nCPID\t%d\r\n" % (os.getpid() + 5000)
    line = b"AUTH\t1\tPLAIN\tservice=imap\tno-penalty\tresp=AHVzZXIxAHBhc3Mx\r\n"
    theirs = strip_greeting(raw_exchange(str(auth_oracle.base_dir / "auth-client"), line,
                                         handshake=hello))
    assert theirs == b"OK\t1\tuser=user1\n"
    conn = ac.ServerConnection(MECHANISMS.upper().split())
    events = conn.feed(hello + line)
    assert isinstance(events[-1], ac.AuthBegin) and events[-1].initial_response == b"\0user1\0pass1"


def test_longest_accepted_line_is_the_same(auth_oracle: DovecotOracle) -> None:
    prefix = b"AUTH\t1\tPLAIN\tservice=imap\tno-penalty\tresp="
    line = prefix + b"=" * (16383 - len(prefix)) + b"\n"  # 16383 bytes + LF: accepted
    theirs = strip_greeting(raw_exchange(str(auth_oracle.base_dir / "auth-client"), line,
                                         handshake=HELLO % (os.getpid() + 3000)))
    assert theirs.startswith(b"FAIL\t1\t")
    conn = ac.ServerConnection(MECHANISMS.upper().split())
    conn.feed(HELLO % 1)
    [event] = conn.feed(line)
    assert isinstance(event, ac.Reply) and event.data == theirs


@pytest.mark.parametrize("listener", ["auth-master", "auth-userdb"])
def test_master_greeting_is_byte_identical(listener: str, auth_oracle: DovecotOracle) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(auth_oracle.base_dir / listener))
    try:
        raw = b""
        while raw.count(b"\n") < 2:
            chunk = s.recv(4096)
            assert chunk, raw
            raw += chunk
    finally:
        s.close()
    [hello] = am.ClientConnection().feed(raw)
    assert isinstance(hello, am.ServerHello)
    assert am.ServerConnection.handshake(hello.spid) == raw


def test_master_codec_user_pass_list_flush(auth_oracle: DovecotOracle) -> None:
    master = AuthMasterSocket(auth_oracle.base_dir / "auth-master")
    try:
        assert master.hello.major == 1 and master.hello.spid > 0
        vmail = mail_user()
        user = master.ask(am.ClientConnection.user(1, "user1", {"service": "imap"}))
        assert isinstance(user, am.UserReply) and user.user == "user1"
        assert user.fields["uid"] == str(vmail.pw_uid)
        assert user.fields["home"].endswith("/home/user1")
        assert master.ask(am.ClientConnection.user(2, "nobody", {"service": "imap"})) == \
            am.NotFound(2)
        assert master.ask(am.ClientConnection.passdb(3, "user1", {"service": "imap"})) == \
            am.PassReply(3, {"user": "user1"})
        master.sock.sendall(am.ClientConnection.list_users(4))
        seen = []
        while True:
            event = master.next_event()
            if isinstance(event, am.ListDone):
                assert event == am.ListDone(4, False)
                break
            assert isinstance(event, am.ListEntry) and event.id == 4
            seen.append(event.user)
        assert sorted(seen) == ["user1", "user2@example.org", "user3"]
        flushed = master.ask(am.ClientConnection.cache_flush(5))
        assert isinstance(flushed, am.CacheFlushed) and flushed.id == 5
    finally:
        master.close()


def test_login_handoff_request_with_cookie(auth_oracle: DovecotOracle) -> None:
    """AUTH on auth-login, then REQUEST on auth-master with pid, id and cookie → USER.

    Only login connections (the ``auth-login`` listener) can be named by REQUEST; the
    ``auth-client`` socket serves Postfix-like clients whose logins need no handoff.
    """
    client = AuthClientSocket(auth_oracle.base_dir / "auth-login")
    master = AuthMasterSocket(auth_oracle.base_dir / "auth-master")
    try:
        ok, _ = client.conversation("PLAIN", b"\0user1\0pass1", None)
        assert isinstance(ok, ac.Success)
        reply = master.ask(am.ClientConnection.request(7, os.getpid(), ok.id,
                                                       client.handshake.cookie))
        assert isinstance(reply, am.UserReply) and reply.user == "user1" and reply.id == 7
        assert "uid" in reply.fields and reply.fields["auth_mech"] == "PLAIN"
        bad = master.ask(am.ClientConnection.request(8, os.getpid(), ok.id, b"\0" * 16))
        assert isinstance(bad, am.Failure) and bad.id == 8
    finally:
        client.close()
        master.close()


@pytest.mark.parametrize("line", [
    b"BOGUS\t7\n",
    b"USER\t1\tuser1\n",
    b"USER\t1\t" + b"u" * 1017 + b"\tservice=imap\n",
])
def test_master_violations_drop_the_connection(line: bytes, auth_oracle: DovecotOracle) -> None:
    theirs = raw_exchange(str(auth_oracle.base_dir / "auth-master"), line,
                          handshake=b"VERSION\t1\t0\n")
    assert theirs.endswith(b"<closed>")
    assert b"USER\t" not in theirs and b"NOTFOUND" not in theirs
    conn = am.ServerConnection()
    events = conn.feed(b"VERSION\t1\t0\n" + line)
    assert isinstance(events[-1], am.Disconnect) and conn.closed


def test_master_longest_request_is_accepted_by_both(auth_oracle: DovecotOracle) -> None:
    line = b"USER\t1\t" + b"u" * (1023 - 7 - 13) + b"\tservice=imap\n"
    assert len(line) == 1024
    theirs = raw_exchange(str(auth_oracle.base_dir / "auth-master"), line,
                          handshake=b"VERSION\t1\t0\n")
    assert b"NOTFOUND\t1\n" in theirs
    conn = am.ServerConnection()
    events = conn.feed(b"VERSION\t1\t0\n" + line)
    assert isinstance(events[-1], am.UserLookup)
