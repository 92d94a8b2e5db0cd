"""Maildrop pieces that need no server: the default UIDL's fast path, the mbox header MD5."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from cote.mailproc.pop3.maildrop import DEFAULT_UIDL_FORMAT, mbox_header_md5
from cote.variables import compile_template

UINT32 = st.integers(min_value=1, max_value=2**32 - 1)


@given(UINT32, UINT32)
def test_default_uidl_fast_path_equals_the_template(uid: int, uidvalidity: int) -> None:
    values = {"u": str(uid), "uid": str(uid), "v": str(uidvalidity),
              "uidvalidity": str(uidvalidity)}
    assert compile_template(DEFAULT_UIDL_FORMAT).expand(values) == \
        f"{uid:08x}{uidvalidity:08x}"


def test_header_md5_takes_the_first_received_and_what_precedes_it() -> None:
    header = (b"Date: early\r\nReceived: one\r\n\ttwo\r\nReceived: second\r\n"
              b"Message-ID: <late@x>\r\nDelivered-To: a@x\r\n\r\nDate: in the body\r\n")
    want = hashlib.md5(b"early" + b"one" + b"\ttwo" + b"a@x").hexdigest()
    assert mbox_header_md5(header) == want
    assert mbox_header_md5(b"") == hashlib.md5(b"").hexdigest()
