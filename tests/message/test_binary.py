"""BINARY decoding: streamed decoders agree with whole-part decoding, also on errors and at
any chunk boundary; a 20 MB base64 attachment is decoded in bounded memory."""

from __future__ import annotations

import base64
import mmap
import random
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from cote.storage.message.binary import (
    BinaryParseError,
    _base64_stream,
    _qp_stream,
    binary_content,
    binary_stream,
    decode_base64,
    decode_qp,
)
from cote.storage.message.scanner import scan, scan_file
from cote.storage.message.sections import parse_section
from tests.message.corpusgen import big_attachment, corpus


def _outcome(fn: Callable[[], bytes]) -> bytes | str:
    try:
        return fn()
    except BinaryParseError:
        return "error"


def _split(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    pos = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        yield data[pos:cut]
        pos = cut
    yield data[pos:]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"aGk=", b"aGVs", b"bG8=", b"=", b"\r\n", b" ", b"!", b"QQ",
                                 b"QUJD", b"===="]), max_size=12),
       st.lists(st.integers(0, 60), max_size=5))
def test_base64_stream_equals_whole(pieces: list[bytes], cuts: list[int]) -> None:
    data = b"".join(pieces)
    whole = _outcome(lambda: decode_base64(data))
    streamed = _outcome(lambda: b"".join(_base64_stream(_split(data, cuts))))
    assert streamed == whole


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"=3D", b"=\r\n", b"\r\n", b" ", b"\t", b"=", b"=ZZ",
                                 b"=c3=a9", b"\xe9"]), max_size=12),
       st.lists(st.integers(0, 60), max_size=5))
def test_qp_stream_equals_whole(pieces: list[bytes], cuts: list[int]) -> None:
    data = b"".join(pieces)
    whole = _outcome(lambda: decode_qp(data))
    streamed = _outcome(lambda: b"".join(_qp_stream(_split(data, cuts))))
    assert streamed == whole


def test_stream_equals_content_on_the_corpus() -> None:
    for name, data in corpus():
        if len(data) > 1_000_000:
            continue
        parts = scan(data)
        for s in (b"", b"TEXT", b"1", b"2", b"1.1"):
            sec = parse_section(s)
            try:
                whole = binary_content(data, parts, sec)
            except (BinaryParseError, ValueError) as e:
                try:
                    binary_stream(data, parts, sec)
                except type(e):
                    continue
                raise AssertionError(f"{name} {s!r}: stream did not fail like content") from e
            size, literal8, chunks = binary_stream(data, parts, sec)
            assert (size, literal8, b"".join(chunks)) == (len(whole.data), whole.literal8,
                                                          whole.data), (name, s)


def test_twenty_megabyte_attachment_streams_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.eml"
    path.write_bytes(big_attachment(15 * 1024 * 1024))
    parts = scan_file(str(path))
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        tracemalloc.start()
        try:
            size, literal8, chunks = binary_stream(mm, parts, parse_section(b"2"))
            total = 0
            head = b""
            for chunk in chunks:
                if not head:
                    head = chunk[:64]
                total += len(chunk)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert size == total == 15 * 1024 * 1024 and literal8
    assert head == random.Random(5).randbytes(64)
    assert peak < 12_000_000, peak
    assert base64  # the attachment is base64 (corpusgen)
