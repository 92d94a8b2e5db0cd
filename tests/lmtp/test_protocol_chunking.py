"""Where the network splits LMTP input never changes what the protocol does."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from cote.mailproc.lmtp.protocol import CheckRecipient, DataChunk, DataEnd, LmtpProtocol, Reply

LINE = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b""))


def run(chunks: list[bytes]) -> tuple[bytes, bytes]:
    proto = LmtpProtocol("h", "ready")
    replies, data = bytearray(), bytearray()

    def drive(events: list[object]) -> None:
        for e in events:
            if isinstance(e, Reply):
                replies.extend(e.data)
            elif isinstance(e, CheckRecipient):
                drive(proto.recipient_checked(True))
            elif isinstance(e, DataChunk):
                data.extend(e.data)
            elif isinstance(e, DataEnd):
                drive(proto.delivered([b"250 ok\r\n"] * len(e.recipients)))

    for c in chunks:
        drive(proto.receive_data(c))
    return bytes(replies), bytes(data)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=300)
@given(st.lists(LINE, max_size=20), st.lists(st.integers(0, 10_000), max_size=15),
       st.booleans())
def test_any_split_gives_the_same_result(lines: list[bytes], cuts: list[int], bdat: bool) -> None:
    body = b"".join(line + b"\r\n" for line in lines)
    head = b"LHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<u>\r\n"
    if bdat:
        stream = head + b"BDAT %d LAST\r\n" % len(body) + body + b"NOOP\r\n"
    else:
        stuffed = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n"
                           for line in lines)
        stream = head + b"DATA\r\n" + stuffed + b".\r\nNOOP\r\n"
    whole = run([stream])
    assert whole[1] == body
    assert whole[0].endswith(b"250 ok\r\n250 2.0.0 OK\r\n")
    assert run(split(stream, cuts)) == whole
