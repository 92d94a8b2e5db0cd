"""Section syntax and CRLF streaming."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cote.storage.message.lineends import SaveLineEnds, to_stored
from cote.storage.message.scanner import line_counts, line_counts_chunked, scan
from cote.storage.message.sections import (
    HEADER_FIELDS,
    HEADER_FIELDS_NOT,
    MIME,
    TEXT,
    Section,
    SectionError,
    crlf_chunks,
    crlf_size,
    parse_section,
    resolve,
    to_crlf,
)


def test_parse_section() -> None:
    assert parse_section(b"") == Section((), b"")
    assert parse_section(b"1.2.text") == Section((1, 2), TEXT)
    assert parse_section(b"3.MIME") == Section((3,), MIME)
    assert parse_section(b'HEADER.FIELDS (From "Subject" x-a)') == Section(
        (), HEADER_FIELDS, (b"FROM", b"SUBJECT", b"X-A"))
    assert parse_section(b"2.HEADER.FIELDS.NOT (To)") == Section((2,), HEADER_FIELDS_NOT, (b"TO",))
    for bad in (b"MIME", b"HEADER.FIELDS", b"HEADER.FIELDS ()", b"1.", b".1", b"TEXT (A)",
                b"BOGUS", b"1.x"):
        with pytest.raises(SectionError):
            parse_section(bad)


def test_resolve_follows_dovecot_navigation() -> None:
    msg = (b"Content-Type: multipart/mixed; boundary=X\n\n--X\n\nleaf\n--X\n"
           b"Content-Type: message/rfc822\n\nSubject: in\n\ninner\n--X--\n")
    parts = scan(msg)
    assert resolve(parts, (1,)) == (1, False)
    assert resolve(parts, (1, 1)) == (1, True)  # a leaf takes one ".1" as itself
    assert resolve(parts, (1, 1, 1)) == (-1, False)
    assert resolve(parts, (2,)) == (2, False)
    assert resolve(parts, (2, 1)) == (3, True)  # into the encapsulated message's body
    assert resolve(parts, (2, 1, 1)) == (-1, False)
    assert resolve(parts, (0,)) == (1, False)  # Dovecot treats 0 as 1 in a multipart
    assert resolve(parts, (3,)) == (-1, False)


@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b"bc", b"\x00"]), max_size=60),
       st.integers(0, 80), st.integers(0, 80) | st.none(), st.integers(1, 7))
def test_crlf_chunks_equal_whole_conversion(pieces: list[bytes], offset: int,
                                            length: int | None, chunk: int) -> None:
    data = b"".join(pieces)
    whole = to_crlf(data)
    got = b"".join(crlf_chunks(data, 0, len(data), offset, length, chunk_size=chunk))
    assert got == (whole[offset:] if length is None else whole[offset:offset + length])
    assert crlf_size(data, 0, len(data)) == len(whole)


@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a"]), max_size=60),
       st.integers(1, 7))
def test_chunked_line_counts_equal_direct(pieces: list[bytes], chunk: int) -> None:
    data = b"".join(pieces)
    assert line_counts_chunked(data, 0, len(data), chunk) == line_counts(data, 0, len(data))


@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b"\r\r\n"]), max_size=40),
       st.integers(1, 5))
def test_save_line_ends_stream_equals_whole(pieces: list[bytes], chunk: int) -> None:
    data = b"".join(pieces)
    conv = SaveLineEnds()
    streamed = b"".join(conv.feed(data[i:i + chunk]) for i in range(0, len(data), chunk))
    streamed += conv.finish()
    assert streamed == to_stored(data)
    assert streamed.count(b"\n") == data.count(b"\n")


def test_save_line_ends_like_dovecot() -> None:
    # observed on Dovecot 2.3.19's maildir (corpus 072): one CR per CRLF goes, a final CR too
    assert to_stored(b"Subject: cr\r\r\n\r\nx\r\r\ny\r\r\r\nz\r") == (
        b"Subject: cr\r\n\nx\r\ny\r\r\nz")
    assert to_stored(b"a\rb\r\n") == b"a\rb\n"
