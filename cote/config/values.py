"""Typed setting values of the Dovecot 2.3 config language: parse and print them like doveconf.

Every setting has one of these types; ``parse`` turns the text from the config file into a
Python value (or raises ``ValueError`` with doveconf's message) and ``format_value`` prints it
back in doveconf's normalised form (``10240`` → ``10 k``, ``3600s`` → ``1 hours``).
"""

from __future__ import annotations

import re

Value = str | bool | int | float

SIZE_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_RE = re.compile(r"\s*(\d+)\s*(?:([bkmgtBKMGT])(?:[iI]?[bB])?)?\s*\Z")
_SIZE_PRINT = ((1 << 40, "T"), (1 << 30, "G"), (1 << 20, "M"), (1 << 10, "k"))
SIZE_MAX = (1 << 64) - 1

_TIME_UNITS: dict[str, int] = {}
for _names, _ms in (
    (("ms", "msec", "msecs", "millisecond", "milliseconds"), 1),
    (("s", "sec", "secs", "second", "seconds"), 1000),
    (("m", "min", "mins", "minute", "minutes"), 60_000),
    (("h", "hour", "hours"), 3_600_000),
    (("d", "day", "days"), 86_400_000),
    (("w", "week", "weeks"), 604_800_000),
):
    for _n in _names:
        _TIME_UNITS[_n] = _ms
_TIME_RE = re.compile(r"\s*(\d+)\s*([a-zA-Z]*)\s*\Z")
_TIME_PRINT = ((604_800_000, "weeks"), (86_400_000, "days"), (3_600_000, "hours"),
               (60_000, "mins"), (1000, "secs"))
UINT_MAX = (1 << 32) - 1

BOOL_TRUE = frozenset({"yes", "y", "1"})
BOOL_FALSE = frozenset({"no", "n", "0"})


def parse_size(text: str) -> int:
    m = _SIZE_RE.match(text)
    if m is None:
        raise ValueError(f"Invalid size: {text}")
    n = int(m.group(1))
    if n > SIZE_MAX:
        raise ValueError(f"Invalid size: {text}")
    n *= SIZE_UNITS[(m.group(2) or "b").lower()]
    if n > SIZE_MAX:
        raise ValueError(f"Size is too large: {text}")
    return n


def format_size(n: int) -> str:
    if n == 0:
        return "0"
    for mult, unit in _SIZE_PRINT:
        if n % mult == 0:
            return f"{n // mult} {unit}"
    return f"{n} B"


def parse_time_ms(text: str, *, msecs: bool) -> int:
    """Milliseconds of a time interval; ``msecs`` says whether sub-second values are allowed."""
    m = _TIME_RE.match(text)
    if m is None:
        raise ValueError(f"Invalid time interval: {text}")
    n = int(m.group(1))
    unit = m.group(2).lower()
    if not unit:
        if n != 0:
            raise ValueError(
                f"Time interval '{text}' is missing units (add e.g. 's' for seconds)")
        return 0
    mult = _TIME_UNITS.get(unit)
    if mult is None:
        raise ValueError(f"Invalid time interval: {text}")
    ms = n * mult
    if msecs:
        if ms > UINT_MAX:
            raise ValueError(f"Time interval is too large: {text}")
    else:
        if ms % 1000:
            raise ValueError(f"Milliseconds not supported for this setting: {text}")
        if ms // 1000 > UINT_MAX:
            raise ValueError(f"Time interval is too large: {text}")
    return ms


def format_time_ms(ms: int) -> str:
    if ms == 0:
        return "0"
    for mult, unit in _TIME_PRINT:
        if ms % mult == 0:
            return f"{ms // mult} {unit}"
    return f"{ms} ms"


def parse_bool(text: str) -> bool:
    low = text.lower()
    if low in BOOL_TRUE:
        return True
    if low in BOOL_FALSE:
        return False
    raise ValueError(f"Invalid boolean value: {text} (use yes or no)")


def parse_uint(text: str) -> int:
    if text.startswith("-") and text[1:].isdigit() and text[1:].isascii():
        raise ValueError(f"Invalid number {text}: Number too small")
    if not text.isdigit() or not text.isascii():
        raise ValueError(f"Invalid number {text}: Not a valid number")
    n = int(text)
    if n > UINT_MAX:
        raise ValueError(f"Invalid number {text}: Number too large")
    return n


def parse_octal(text: str) -> int:
    if text.startswith("0"):
        if not text.isdigit() or not text.isascii() or any(c in "89" for c in text):
            raise ValueError(f"Invalid number: {text}")
        n = int(text, 8)
        if n > UINT_MAX:
            raise ValueError(f"Invalid number {text}: Number too large")
        return n
    return parse_uint(text)


def parse_port(text: str) -> int:
    if not text.isdigit() or not text.isascii() or int(text) > 65535:
        raise ValueError(f"Invalid port number {text}")
    return int(text)


def parse(kind: str, text: str, enum_values: tuple[str, ...] = ()) -> Value:
    """Parse ``text`` as a value of type ``kind``; raises ValueError with doveconf's message."""
    if kind == "str":
        return text
    if kind == "bool":
        return parse_bool(text)
    if kind == "uint":
        return parse_uint(text)
    if kind == "size":
        return parse_size(text)
    if kind == "time":
        return parse_time_ms(text, msecs=False) / 1000
    if kind == "time_msecs":
        return parse_time_ms(text, msecs=True) / 1000
    if kind == "octal":
        return parse_octal(text)
    if kind == "port":
        return parse_port(text)
    if kind == "enum":
        # auth_verbose_passwords also takes "sha1:<n>" (the digest cut to n characters)
        cut_sha1 = "sha1" in enum_values and text.startswith("sha1:") and text[5:].isdigit()
        if text not in enum_values and not cut_sha1:
            raise ValueError(f"Invalid value: {text}")
        return text
    raise AssertionError(kind)


def format_value(kind: str, value: Value) -> str:
    """doveconf's printed form of a typed value."""
    if kind == "bool":
        return "yes" if value else "no"
    if kind == "size":
        return format_size(int(value))
    if kind in ("time", "time_msecs"):
        return format_time_ms(round(float(value) * 1000))
    if kind == "octal":
        return f"0{int(value):o}"
    return str(value)
