"""Property tests: chunking never changes the events; random input never escapes as an
exception; sequence sets agree with a naive model."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cote.mailproc.imap import (
    CLOSED,
    NEED_DATA,
    AuthResponse,
    Command,
    Connection,
    LiteralChunk,
    LiteralStart,
    SeqSet,
)
from cote.mailproc.imap.commands import seqset_from_bytes
from cote.mailproc.imap.fuzz import fuzz_parser
from tests.imap.diffcases import CASES, QRESYNC_CASES

SESSION = [
    b"a LOGIN {5}\r\nuser1 {5+}\r\npass1\r\n",
    b"b APPEND INBOX (\\Seen) {11}\r\nhello world {4+}\r\nabcd\r\n",
    b"c APPEND INBOX ~{3+}\r\n\x00\x01\x02\r\n",
    b"d IDLE\r\n", b"DONE\r\n",
    b"e AUTHENTICATE PLAIN\r\n", b"AHVzZXIxAHBhc3Mx\r\n",
    b'f SEARCH CHARSET UTF-8 OR (FROM "x y" SINCE 1-Jan-2020) {3}\r\nabc\r\n',
    b"g FETCH 1:* (FLAGS BODY.PEEK[1.HEADER.FIELDS (A B)]<0.10>)\r\n",
    b"h APPEND INBOX {2+}\r\nab junk\r\n",
]
_PIECES = [b"a ", b"UID ", b"FETCH ", b"SEARCH ", b"APPEND ", b"SELECT ", b"STORE ", b"1:*",
           b"(", b")", b"[", b"]", b"{3}\r\n", b"{2+}\r\n", b"~{1}\r\n", b"\"", b"\\", b" ",
           b"\r\n", b"\n", b"BODY[", b"HEADER.FIELDS (", b"<0.5>", b"NIL", b"OR ", b"NOT ",
           b"IDLE\r\n", b"DONE\r\n", b"AUTHENTICATE PLAIN\r\n", b"*\r\n", b"\x00", b"\xff",
           b"+FLAGS.SILENT ", b"RETURN (", b"CHARSET ", b"$", b"4294967296", b"x" * 300]
STREAMS = [b"".join(SESSION), b"".join(CASES[:60]), b"".join(QRESYNC_CASES),
           b"".join(c for c in CASES if len(c) < 1000)]


def run(chunks: list[bytes], max_line_length: int = 65536) -> list[object]:
    """A scripted server: accepts literals, enters IDLE/AUTHENTICATE when asked. Literal data
    is joined so that chunk boundaries do not show in the result."""
    conn = Connection(max_line_length=max_line_length)
    conn.enabled = frozenset({"QRESYNC"})
    out: list[object] = []
    for chunk in [*chunks, b""]:
        conn.receive_data(chunk)
        while True:
            e = conn.next_event()
            if e is NEED_DATA or e is CLOSED:
                break
            if isinstance(e, LiteralChunk) and out and isinstance(out[-1], LiteralChunk):
                out[-1] = LiteralChunk(out[-1].data + e.data)
                continue
            out.append(e)
            if isinstance(e, LiteralStart):
                conn.accept_literal()
            elif isinstance(e, Command) and e.name == "IDLE":
                conn.idle(e.tag)
            elif isinstance(e, Command) and e.name == "AUTHENTICATE":
                conn.authenticate(e.tag)
            elif isinstance(e, AuthResponse):
                conn.end_authenticate()
    out.append(conn.data_to_send())
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, prev = [], 0
    for p in points:
        pieces.append(data[prev:p])
        prev = p
    pieces.append(data[prev:])
    return [p for p in pieces if p]  # b"" would mean end of stream


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.sampled_from(STREAMS),
                 st.lists(st.sampled_from(_PIECES + CASES[:100]), max_size=20).map(b"".join)),
       st.lists(st.integers(min_value=0), max_size=40), st.sampled_from([40, 100, 65536]))
def test_arbitrary_chunking_gives_the_same_events(stream: bytes, cuts: list[int],
                                                  max_line_length: int) -> None:
    assert run(split(stream, cuts), max_line_length) == run([stream], max_line_length)


def test_byte_at_a_time_gives_the_same_events() -> None:
    stream = STREAMS[0]
    assert run([stream[i:i + 1] for i in range(len(stream))]) == run([stream])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_never_raise(data: bytes) -> None:
    fuzz_parser(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 255), st.lists(st.sampled_from(_PIECES + CASES[:80]), max_size=25))
def test_fuzz_grammar_shaped_input_never_raises(first: int, pieces: list[bytes]) -> None:
    fuzz_parser(bytes([first]) + b"".join(pieces))


@given(st.lists(st.integers(1, 300), max_size=40), st.integers(0, 350))
def test_seqset_from_ints_is_exact_and_compact(numbers: list[int], probe: int) -> None:
    s = SeqSet.from_ints(numbers)
    assert list(s.iter(400)) == sorted(set(numbers))
    assert (probe in s.matcher(400)) == (probe in set(numbers))
    assert seqset_from_bytes(bytes(s)) == s if numbers else str(s) == ""
    assert all(b[0] > a[1] + 1 for a, b in zip(s.ranges, s.ranges[1:], strict=False))


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), min_size=1, max_size=8),
       st.integers(1, 60))
def test_seqset_star_and_reversed_ranges_resolve_like_a_naive_model(
        ranges: list[tuple[int, int]], highest: int) -> None:
    text = b",".join((b"*" if lo == 0 else b"%d" % lo) + b":" + (b"*" if hi == 0 else b"%d" % hi)
                     for lo, hi in ranges)
    s = seqset_from_bytes(text)
    assert s is not None
    naive: set[int] = set()
    for lo, hi in ranges:
        a = highest if lo == 0 else lo
        b = highest if hi == 0 else hi
        naive.update(range(min(a, b), max(a, b) + 1))
    assert list(s.iter(highest)) == sorted(n for n in naive if n <= highest)
    m = s.matcher(highest)
    assert all((n in m) == (n in naive) for n in range(0, 70))
