"""Large messages: a 20 MB file is scanned and streamed through mmap with bounded memory,
and a 1,000-part message keeps its structure."""

from __future__ import annotations

import base64
import hashlib
import mmap
import random
import tracemalloc
from pathlib import Path

from cote.storage.message.binary import binary_content
from cote.storage.message.bodystructure import bodystructure, children_of
from cote.storage.message.scanner import LEAF, MULTIPART, scan, scan_file, virtual_size
from cote.storage.message.sections import crlf_chunks, crlf_size, parse_section, section_range
from tests.message.corpusgen import big_attachment, thousand_parts


def test_twenty_megabytes_scan_and_stream_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.eml"
    with path.open("wb") as f:
        f.write(big_attachment(15 * 1024 * 1024))  # ~20 MB once base64-encoded
    size = path.stat().st_size
    assert size > 20_000_000
    tracemalloc.start()
    try:
        parts = scan_file(str(path))
        scan_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            rng = section_range(parts, parse_section(b"2"))
            assert rng is not None
            digest = hashlib.sha256()
            streamed = 0
            for chunk in crlf_chunks(mm, rng[0], rng[1]):
                digest.update(chunk)
                streamed += len(chunk)
            assert streamed == crlf_size(mm, rng[0], rng[1]) == parts[2].body_vsize
            total = virtual_size(mm)
        stream_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert scan_peak < 4_000_000, scan_peak  # never the whole 20 MB
    assert stream_peak < 8_000_000, stream_peak
    assert [p.kind for p in parts] == [MULTIPART, LEAF, LEAF]
    assert total == size + path.read_bytes().count(b"\n")  # LF-only file: CRLF adds one per line
    expected = base64.encodebytes(random.Random(5).randbytes(15 * 1024 * 1024))
    assert digest.hexdigest() == hashlib.sha256(expected.replace(b"\n", b"\r\n")[:-2]).hexdigest()


def test_thousand_parts() -> None:
    data = thousand_parts()
    parts = scan(data)
    kids = children_of(parts)
    assert len(kids[0]) == 1000
    assert len(parts) == 1001
    bs = bodystructure(parts)
    assert bs.count(b'("text" "plain"') == 500  # 250 explicit + 250 empty-header parts
    assert bs.endswith(b' "mixed" ("boundary" "=_thousand") NIL NIL NIL)')
    second = binary_content(data, parts, parse_section(b"2"))
    assert second.literal8 == bool(second.data)
