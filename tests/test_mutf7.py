"""Modified UTF-7 round trips and the RFC 3501 examples."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cote import mutf7


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("INBOX", "INBOX"),
        ("&", "&-"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("A&B", "A&-B"),
    ],
)
def test_known_encodings(text: str, wire: str) -> None:
    assert mutf7.encode(text) == wire
    assert mutf7.decode(wire) == text


@given(st.text())
def test_round_trip(text: str) -> None:
    try:
        encoded = mutf7.encode(text)
    except UnicodeEncodeError:  # lone surrogates cannot be UTF-16 encoded
        return
    assert mutf7.decode(encoded) == text


@pytest.mark.parametrize("bad", ["&Jjo", "&AGE-", "ü", "&Jjo!-"])
def test_invalid_names_are_rejected(bad: str) -> None:
    assert not mutf7.is_valid(bad)
