"""The ManageSieve wire parser and the sans-IO machines on arbitrary input.

Literals split across reads, both literal forms, quoted escapes, malformed lines skipped
whole, over-long lines reported; hypothesis: the parser, the login dialogue and the
authenticated session answer any bytes with protocol replies, never an exception.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from cote.log import Logger
from cote.login.actions import Reply
from cote.login.managesieve_dialogue import ManageSieveLogin, ManageSieveLoginSettings
from cote.login.pop3_dialogue import Mechanism
from cote.mailproc.managesieve import wire
from cote.mailproc.managesieve.capability import Capabilities
from cote.mailproc.managesieve.server import serve
from cote.mailproc.managesieve.session import Session
from cote.mailproc.managesieve.storage import Quota, ScriptStorage
from cote.mailproc.managesieve.wire import Atom, BadLine, Line, Parser, String

CAPS = Capabilities("Dovecot (Debian) Pigeonhole", "fileinto", "mailto")


def test_literal_split_across_reads() -> None:
    p = Parser()
    assert p.feed(b'PUTSCRIPT "a" {9+}\r\nkeep') == []
    assert p.feed(b";\r\nst") == []
    line, noop = p.feed(b"\r\nNOOP\r\n")
    assert isinstance(line, Line)
    assert line.words == (Atom("PUTSCRIPT"), String(b"a"),
                          String(b"keep;\r\nst", literal=True))
    assert noop == Line((Atom("NOOP"),), 6)


def test_synchronising_literal_and_escapes() -> None:
    (line,) = Parser().feed(b'NOOP {3}\r\nabc\r\n')
    assert isinstance(line, Line) and line.args == (String(b"abc", literal=True),)
    (line,) = Parser().feed(b'NOOP "a\\"b\\\\c"\r\n')
    assert isinstance(line, Line) and line.args == (String(b'a"b\\c'),)


def test_bad_line_is_skipped_whole() -> None:
    items = Parser().feed(b'NOOP "a\\x"\r\nNOOP a"b\r\nNOOP  "c" \r\n')
    assert [type(i) for i in items] == [BadLine, BadLine, Line]
    assert items[2] == Line((Atom("NOOP"), String(b"c")), 12)  # spaces may repeat and trail


def test_too_long_line() -> None:
    p = Parser(max_line=100)
    items = p.feed(b"NOOP " + b"x" * 200)
    assert items and isinstance(items[0], BadLine) and items[0].too_long
    assert p.feed(b"yyy\r\nNOOP\r\n") == [Line((Atom("NOOP"),), 6)]


def test_large_literal_is_skipped_not_parsed() -> None:
    p = Parser(max_literal=10)
    first = p.feed(b'PUTSCRIPT "a" {30+}\r\nNOOP\r\nNOOP\r\n')
    assert first == [BadLine("literal too large", too_long=True, name="PUTSCRIPT", literal=30)]
    assert p.feed(b"NOOP\r\nNOOP\r\nNOOP\r\n") == []  # 30 octets of the literal, dropped
    assert p.feed(b"\r\nLOGOUT\r\n") == [Line((Atom("LOGOUT"),), 8)]


def test_responses() -> None:
    assert wire.no("a\r\nb") == b"NO {4}\r\na\r\nb\r\n"
    assert wire.ok("x", "WARNINGS") == b'OK (WARNINGS) "x"\r\n'
    assert wire.string('say "hi"') == b'"say \\"hi\\""'


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=8))
def test_parser_never_raises(chunks: list[bytes]) -> None:
    p = Parser(max_line=64)
    for chunk in chunks:
        for item in p.feed(chunk):
            assert isinstance(item, Line | BadLine)


WORDS = st.sampled_from([b"AUTHENTICATE", b"PUTSCRIPT", b"GETSCRIPT", b"SETACTIVE",
                         b"DELETESCRIPT", b"RENAMESCRIPT", b"HAVESPACE", b"CHECKSCRIPT",
                         b"LISTSCRIPTS", b"NOOP", b"LOGOUT", b"CAPABILITY", b"STARTTLS",
                         b'"PLAIN"', b'"a"', b'"b/c"', b'""', b'"keep;"', b'"foo;"', b"0",
                         b"10", b"99999999999", b"{3+}\r\nabc", b"{2}\r\nx", b"*", b'"*"',
                         b'"AGEAYg=="', b"x", b"\xff", b'"\xc3\xa9"'])


def lines() -> st.SearchStrategy[bytes]:
    return st.lists(st.lists(WORDS, min_size=1, max_size=4).map(b" ".join), max_size=12) \
        .map(lambda ls: b"".join(line + b"\r\n" for line in ls))


@settings(max_examples=200, deadline=None)
@given(lines())
def test_login_dialogue_answers_anything(data: bytes) -> None:
    login = ManageSieveLogin(ManageSieveLoginSettings(
        "ready.", CAPS, (Mechanism("PLAIN", plaintext=True),), secured=False,
        tls_available=True))
    for item in Parser().feed(data):
        for action in login.handle(item):
            assert not isinstance(action, Reply) or action.data.endswith(b"\r\n")


@settings(max_examples=200, deadline=None)
@given(lines())
def test_session_answers_anything(tmp_path_factory: object, data: bytes) -> None:
    assert hasattr(tmp_path_factory, "mktemp")
    home = Path(tmp_path_factory.mktemp("home"))
    session = Session(ScriptStorage(str(home / "sieve"), str(home / ".dovecot.sieve"),
                                    Quota(max_scripts=2, max_storage=100)), CAPS)
    for item in Parser().feed(data):
        reply = session.handle(item).reply
        assert reply.endswith(b"\r\n")
        assert reply.startswith((b"OK", b"NO", b"BYE", b'"', b"{"))
        if reply.startswith((b'"', b"{")):  # listings, scripts, capabilities end in OK
            assert b"\r\nOK " in reply


def test_idle_client_is_dropped(tmp_path: Path) -> None:
    """A silent client gets BYE "Disconnected for inactivity." and the session ends."""
    ours, theirs = socket.socketpair()
    read_fd, write_fd = os.pipe()
    session = Session(ScriptStorage(str(tmp_path / "sieve"), str(tmp_path / ".dovecot.sieve")),
                      CAPS)

    async def run() -> str:
        reader, writer = await asyncio.open_connection(sock=ours)
        return await serve(reader, writer, session, Logger("t: ", write_fd),
                           pipelined=b"NOOP\r\n", idle_timeout=0.2)
    assert asyncio.run(run()) == "Disconnected for inactivity"
    theirs.settimeout(5)
    received = b""
    while chunk := theirs.recv(4096):
        received += chunk
    theirs.close()
    os.close(write_fd)
    log = os.read(read_fd, 65536)
    os.close(read_fd)
    assert received == (b'OK "Logged in."\r\nOK "NOOP Completed"\r\n'
                        b'BYE "Disconnected for inactivity."\r\n')
    assert b"Disconnected: Disconnected for inactivity bytes=4/" in log
