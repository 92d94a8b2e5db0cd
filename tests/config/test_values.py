"""Sizes and times: doveconf's parsing and printing, checked as round-trip properties."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from cote.config.values import (
    SIZE_MAX,
    UINT_MAX,
    format_size,
    format_time_ms,
    format_value,
    parse,
    parse_octal,
    parse_size,
    parse_time_ms,
)

SIZE_UNITS = {"B": 1, "k": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
TIME_UNITS = {"ms": 1, "msecs": 1, "s": 1000, "secs": 1000, "seconds": 1000, "m": 60_000,
              "mins": 60_000, "minutes": 60_000, "h": 3_600_000, "hours": 3_600_000,
              "d": 86_400_000, "days": 86_400_000, "w": 604_800_000, "weeks": 604_800_000}


@given(st.integers(min_value=0, max_value=SIZE_MAX))
def test_size_format_parses_back(n: int) -> None:
    assert parse_size(format_size(n)) == n


@given(st.integers(min_value=0, max_value=1 << 30), st.sampled_from(sorted(SIZE_UNITS)),
       st.sampled_from(["", " "]), st.booleans())
def test_size_with_units(n: int, unit: str, blank: str, lower: bool) -> None:
    assume(n * SIZE_UNITS[unit] <= SIZE_MAX)
    text = f"{n}{blank}{unit.lower() if lower else unit}"
    assert parse_size(text) == n * SIZE_UNITS[unit]
    assert parse_size(format_size(parse_size(text))) == n * SIZE_UNITS[unit]


@given(st.integers(min_value=0, max_value=UINT_MAX))
def test_time_msecs_format_parses_back(ms: int) -> None:
    assert parse_time_ms(format_time_ms(ms), msecs=True) == ms


@given(st.integers(min_value=0, max_value=UINT_MAX))
def test_time_secs_format_parses_back(secs: int) -> None:
    text = format_time_ms(secs * 1000)
    assert parse_time_ms(text, msecs=False) == secs * 1000
    assert "ms" not in text


@given(st.integers(min_value=1, max_value=10_000), st.sampled_from(sorted(TIME_UNITS)))
def test_time_units(n: int, unit: str) -> None:
    ms = n * TIME_UNITS[unit]
    assume(ms <= UINT_MAX)
    assert parse_time_ms(f"{n} {unit}", msecs=True) == ms
    assert parse_time_ms(format_time_ms(ms), msecs=True) == ms


@pytest.mark.parametrize(("text", "printed"), [
    ("10240", "10 k"), ("1G", "1 G"), ("256 M", "256 M"), ("5 KiB", "5 k"), ("10 MB", "10 M"),
    ("1000", "1000 B"), ("0", "0"), ("18446744073709551615", "18446744073709551615 B"),
])
def test_size_printing_like_doveconf(text: str, printed: str) -> None:
    assert format_size(parse_size(text)) == printed


@pytest.mark.parametrize(("text", "printed"), [
    ("3600s", "1 hours"), ("24 hours", "1 days"), ("7 days", "1 weeks"), ("90 secs", "90 secs"),
    ("60 m", "1 hours"), ("1000 ms", "1 secs"), ("0", "0"), ("1 Hours", "1 hours"),
])
def test_time_printing_like_doveconf(text: str, printed: str) -> None:
    assert format_time_ms(parse_time_ms(text, msecs=False)) == printed


@pytest.mark.parametrize(("kind", "text", "message"), [
    ("size", "1P", "Invalid size: 1P"),
    ("size", "99999999999999T", "Size is too large: 99999999999999T"),
    ("time", "5", "Time interval '5' is missing units (add e.g. 's' for seconds)"),
    ("time", "1 month", "Invalid time interval: 1 month"),
    ("time", "500 ms", "Milliseconds not supported for this setting: 500 ms"),
    ("time_msecs", "4294967296 ms", "Time interval is too large: 4294967296 ms"),
    ("bool", "maybe", "Invalid boolean value: maybe (use yes or no)"),
    ("uint", "-5", "Invalid number -5: Number too small"),
    ("uint", "ten", "Invalid number ten: Not a valid number"),
    ("octal", "0999", "Invalid number: 0999"),
    ("port", "70000", "Invalid port number 70000"),
])
def test_bad_values(kind: str, text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        parse(kind, text)


def test_octal_mode() -> None:
    assert parse_octal("0600") == 0o600
    assert parse_octal("600") == 600          # no leading 0: decimal, as doveconf reads it
    assert format_value("octal", 0o600) == "0600"
    assert format_value("octal", 0) == "00"
    assert parse("time", "30 secs") == 30.0
    assert parse("time_msecs", "500 ms") == 0.5
    assert parse("bool", "YES") is True
