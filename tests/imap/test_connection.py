"""Framing: literals, streamed APPEND, IDLE/AUTHENTICATE modes, transport swaps, limits."""

from __future__ import annotations

import zlib

from cote.mailproc.imap import (
    CLOSED,
    NEED_DATA,
    AuthResponse,
    Bad,
    Bye,
    Command,
    CommandEnd,
    Connection,
    IdleDone,
    LiteralChunk,
    LiteralEnd,
    LiteralStart,
)
from cote.mailproc.imap.commands import Append, Compress, Login
from cote.mailproc.imap.connection import CHUNK_SIZE
from tests.imap.helpers import events


def test_synchronizing_literal_gets_a_continuation_before_its_data() -> None:
    conn = Connection()
    assert events(conn, b"a LOGIN {5}\r\n") == []
    assert conn.data_to_send() == b"+ OK\r\n"
    assert events(conn, b"user1 {5}\r\n") == []
    assert conn.data_to_send() == b"+ OK\r\n"
    assert events(conn, b"pass1\r\n") == [Command("a", "LOGIN", Login(b"user1", b"pass1"))]


def test_literal_plus_sends_no_continuation() -> None:
    conn = Connection()
    assert events(conn, b"a LOGIN {5+}\r\nuser1 pass1\r\n") == \
        [Command("a", "LOGIN", Login(b"user1", b"pass1"))]
    assert conn.data_to_send() == b""


def test_literal_minus_refuses_big_non_synchronizing_literals_and_skips_them() -> None:
    conn = Connection(literal_plus=False, literal_minus=True)
    big = b"x" * 5000
    evs = events(conn, b"a LOGIN {5000+}\r\n" + big + b" p\r\nb NOOP\r\n")
    assert evs == [Bad("a", "Error in IMAP command LOGIN: Non-synchronizing literal too large",
                       "LOGIN"), Command("b", "NOOP", None)]
    small = events(conn, b"c LOGIN {4+}\r\nuser pass\r\n")
    assert small == [Command("c", "LOGIN", Login(b"user", b"pass"))]


def test_append_streams_each_message_in_chunks_after_the_servers_decision() -> None:
    conn = Connection()
    conn.receive_data(b'a APPEND INBOX (\\Seen) " 1-Jan-2020 10:00:00 +0000" {10}\r\n')
    first = conn.next_event()
    assert isinstance(first, Command) and first.args == Append(first.args.mailbox)  # type: ignore
    start = conn.next_event()
    assert start == LiteralStart(10, True, False, ("\\Seen",), start.internal_date)  # type: ignore
    assert conn.data_to_send() == b""  # nothing is promised before the server decides
    conn.accept_literal()
    assert conn.data_to_send() == b"+ OK\r\n"
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"01234")
    assert conn.next_event() == LiteralChunk(b"01234")
    conn.receive_data(b"56789 {3+}\r\nabc\r\nb NOOP\r\n")
    assert conn.next_event() == LiteralChunk(b"56789")
    assert conn.next_event() == LiteralEnd()
    assert conn.next_event() == LiteralStart(3, False)
    conn.accept_literal()
    assert conn.next_event() == LiteralChunk(b"abc")
    assert conn.next_event() == LiteralEnd()
    assert conn.next_event() == CommandEnd("a")
    assert conn.next_event() == Command("b", "NOOP", None)


def test_literal8_for_append_binary() -> None:
    evs = events(Connection(), b"a APPEND INBOX ~{3+}\r\n\x00\x01\x02\r\n")
    assert evs[1] == LiteralStart(3, False, True)
    assert evs[2] == LiteralChunk(b"\x00\x01\x02")


def test_rejected_synchronizing_append_literal_reads_no_data() -> None:
    conn = Connection()
    evs = events(conn, b"a APPEND INBOX {99999999}\r\nb NOOP\r\n", accept=False)
    assert isinstance(evs[0], Command) and isinstance(evs[1], LiteralStart)
    assert evs[2:] == [Command("b", "NOOP", None)]
    assert conn.data_to_send() == b""


def test_rejected_non_synchronizing_append_literal_is_skipped() -> None:
    conn = Connection()
    evs = events(conn, b"a APPEND INBOX {5+}\r\nhello\r\nb NOOP\r\n", accept=False)
    assert evs[2:] == [Command("b", "NOOP", None)]


def test_append_junk_after_a_message_is_bad() -> None:
    evs = events(Connection(), b"a APPEND INBOX {3+}\r\nabc extra\r\nb NOOP\r\n")
    assert evs[-2:] == [Bad("a", "Error in IMAP command APPEND: Invalid arguments", "APPEND"),
                        Command("b", "NOOP", None)]


def test_literal_too_large_ends_the_connection() -> None:
    conn = Connection()
    assert events(conn, b"a SELECT {4294967296}\r\n") == [Bye("Literal size too large")]
    assert conn.next_event() is CLOSED
    conn2 = Connection(max_line_length=1000)
    assert events(conn2, b"a SELECT {2000}\r\n") == [Bye("Literal size too large")]


def test_too_long_argument_is_bad_and_the_connection_goes_on() -> None:
    conn = Connection(max_line_length=100)
    evs = events(conn, b"a SELECT " + b"x" * 200)
    assert evs == [Bad("a", "Error in IMAP command SELECT: Too long argument", "SELECT")]
    assert events(conn, b"x" * 300 + b"\r\nb NOOP\r\n") == [Command("b", "NOOP", None)]


def test_too_large_command_is_bad_and_the_connection_goes_on() -> None:
    conn = Connection(max_line_length=100)
    evs = events(conn, b"a SEARCH " + b"SEEN " * 30)
    assert evs == [Bad("a", "Error in IMAP command SEARCH: IMAP command line too large",
                       "SEARCH")]
    assert events(conn, b"SEEN " * 100 + b"\r\nb NOOP\r\n") == [Command("b", "NOOP", None)]
    # many short arguments are fine as long as the last one starts within the limit
    (ok,) = events(conn, b"c SEARCH " + b"SEEN " * 18 + b"\r\n")
    assert isinstance(ok, Command)


def test_idle_reads_only_done() -> None:
    conn = Connection()
    (cmd,) = events(conn, b"a IDLE\r\n")
    assert cmd == Command("a", "IDLE", None)
    conn.idle("a")
    assert events(conn, b"done\r\n") == [IdleDone("a")]
    events(conn, b"b IDLE\r\n")
    conn.idle("b")
    assert events(conn, b"c NOOP\r\nd NOOP\r\n") == [Bad("b", "Expected DONE"),
                                                      Command("d", "NOOP", None)]


def test_authenticate_mode_yields_client_responses() -> None:
    conn = Connection()
    events(conn, b"a AUTHENTICATE PLAIN\r\n")
    conn.authenticate("a")
    (resp,) = events(conn, b"AHVzZXIxAHBhc3Mx\r\n")
    assert isinstance(resp, AuthResponse) and resp.decode() == b"\x00user1\x00pass1"
    (cancel,) = events(conn, b"*\r\n")
    assert isinstance(cancel, AuthResponse) and cancel.cancelled
    assert AuthResponse("a", b"!!").decode() is None
    conn.end_authenticate()
    assert events(conn, b"b NOOP\r\n") == [Command("b", "NOOP", None)]


def test_starttls_discards_and_reports_buffered_plaintext() -> None:
    conn = Connection()
    conn.receive_data(b"a STARTTLS\r\nb LOGIN injected evil\r\n")
    assert conn.next_event() == Command("a", "STARTTLS", None)
    assert conn.start_tls() == b"b LOGIN injected evil\r\n"
    assert conn.next_event() is NEED_DATA


def test_compress_hands_back_buffered_compressed_bytes() -> None:
    conn = Connection()
    deflate = zlib.compressobj(wbits=-15)
    payload = deflate.compress(b"b NOOP\r\n") + deflate.flush(zlib.Z_SYNC_FLUSH)
    conn.receive_data(b"a COMPRESS DEFLATE\r\n" + payload)
    assert conn.next_event() == Command("a", "COMPRESS", Compress("DEFLATE"))
    rest = conn.start_compress()
    assert rest == payload
    conn.receive_data(zlib.decompressobj(wbits=-15).decompress(rest))
    assert conn.next_event() == Command("b", "NOOP", None)


def test_bare_lf_and_pipelined_commands() -> None:
    evs = events(Connection(), b"a NOOP\nb CHECK\r\nc LOGOUT\r\n")
    assert [e.tag for e in evs] == ["a", "b", "c"]  # type: ignore[union-attr]


def test_unknown_commands_follow_the_process_command_set() -> None:
    conn = Connection(commands=frozenset({"LOGIN", "CAPABILITY"}))
    assert events(conn, b"a SELECT INBOX\r\n") == \
        [Bad("a", "Error in IMAP command SELECT: Unknown command", "SELECT")]
    assert events(conn, b"b UID FETCH 1 FLAGS\r\n") == \
        [Bad("b", "Error in IMAP command UID FETCH: Unknown command", "UID FETCH")]


def test_end_of_stream_is_closed() -> None:
    conn = Connection()
    conn.receive_data(b"a NOO")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"")
    assert conn.next_event() is CLOSED


def test_byte_at_a_time_never_rescans_the_buffer() -> None:
    """The LF search resumes where it stopped: feeding a 60 KB line byte by byte does not look
    at the already-scanned prefix again (the scan position tracks the buffer's end)."""
    conn = Connection()
    line = b"a SEARCH " + b"SEEN " * 12000 + b"\r\n"
    for i, byte in enumerate(line[:-1]):
        conn.receive_data(bytes([byte]))
        assert conn.next_event() is NEED_DATA
        assert conn._scan == i + 1
    conn.receive_data(line[-1:])
    ev = conn.next_event()
    assert isinstance(ev, Command) and ev.name == "SEARCH"


def test_pre_login_dialect_limits_each_argument_not_the_line() -> None:
    conn = Connection(pre_login=True)
    long_pair = b"a LOGIN " + b"u" * 600 + b" " + b"p" * 600 + b"\r\n"
    (login,) = events(conn, long_pair)
    assert isinstance(login, Command) and login.name == "LOGIN"
    assert events(Connection(pre_login=True), b"a LOGIN " + b"u" * 1100) == \
        [Bye("Input buffer full, aborting")]
    (auth,) = events(Connection(pre_login=True), b"a AUTHENTICATE PLAIN " + b"A" * 4000 + b"\r\n")
    assert isinstance(auth, Command) and auth.name == "AUTHENTICATE"


def test_pre_login_dialect_texts_and_bad_command_limit() -> None:
    conn = Connection(pre_login=True)
    assert events(conn, b'a LOGIN "x\r\n') == [Bad("a", "Missing '\"'", "LOGIN")]
    assert events(conn, b"b FOO\r\n") == [Bad("b", "Error in IMAP command received by server.",
                                                "FOO")]
    assert events(conn, b"c FOO\r\n") == [Bye("Too many invalid IMAP commands.")]
    assert conn.next_event() is CLOSED


def test_a_large_append_streams_in_bounded_chunks() -> None:
    conn = Connection()
    size = 5 * 1024 * 1024
    conn.receive_data(b"a APPEND INBOX {%d+}\r\n" % size)
    assert isinstance(conn.next_event(), Command)
    assert conn.next_event() == LiteralStart(size, False)
    conn.accept_literal()
    got = 0
    ended = False
    block = b"x" * (1024 * 1024)
    for _ in range(5):
        conn.receive_data(block)
        while True:
            e = conn.next_event()
            if e is NEED_DATA:
                break
            if e == LiteralEnd():
                ended = True
                break
            assert isinstance(e, LiteralChunk) and len(e.data) <= CHUNK_SIZE
            got += len(e.data)
        assert conn.buffered == 0  # nothing piles up: each chunk leaves the buffer
    assert ended
    conn.receive_data(b"\r\n")
    assert conn.next_event() == CommandEnd("a")
    assert got == size


def test_extra_commands_of_the_server_get_generic_tokens() -> None:
    conn = Connection(commands=frozenset({"GETQUOTAROOT", "NOOP"}))
    (cmd,) = events(conn, b'a GETQUOTAROOT "INBOX"\r\n')
    assert isinstance(cmd, Command) and cmd.name == "GETQUOTAROOT" and cmd.args == [b"INBOX"]


def test_login_dialect_with_every_command_still_streams_append() -> None:
    evs = events(Connection(pre_login=True), b"a APPEND INBOX {1+}\r\nx\r\n")
    assert [type(e).__name__ for e in evs] == ["Command", "LiteralStart", "LiteralChunk",
                                               "LiteralEnd", "CommandEnd"]
    cmd, bad = events(Connection(pre_login=True), b"a APPEND INBOX\r\n")
    assert isinstance(cmd, Command)
    assert bad == Bad("a", "Error in IMAP command received by server.", "APPEND")


def test_no_argument_commands_ignore_any_rest_of_line_even_an_over_long_one() -> None:
    conn = Connection(max_line_length=100)
    assert events(conn, b"a NOOP " + b"x" * 300) == []  # dropped as it arrives
    assert conn.buffered == 0
    assert events(conn, b"x" * 300 + b"\r\nb NOOP {5}\r\n") == [
        Command("a", "NOOP", None), Command("b", "NOOP", None)]
