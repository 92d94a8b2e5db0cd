"""The PROXY protocol parser: round trips, byte-at-a-time input, garbage, Dovecot's texts."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cote.login.haproxy import (
    V2_SIGNATURE,
    HeaderError,
    ProxyHeader,
    encode_v1,
    encode_v2,
    parse_header,
)

ipv4 = st.builds(lambda n: str(ipaddress.IPv4Address(n)), st.integers(0, 2**32 - 1))
ipv6 = st.builds(lambda n: str(ipaddress.IPv6Address(n)), st.integers(0, 2**128 - 1))
ports = st.integers(1, 65535)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse_in_pieces(data: bytes, cut: int) -> ProxyHeader:
    """Feed growing prefixes like a socket would; only the complete header may parse."""
    result = None
    for end in range(cut, len(data) + 1, max(cut, 1)):
        result = parse_header(data[:end])
        if result is not None:
            break
    if result is None:
        result = parse_header(data)
    assert result is not None
    return result


@FAST
@given(st.one_of(st.tuples(ipv4, ipv4), st.tuples(ipv6, ipv6)), ports, ports,
       st.binary(max_size=40), st.integers(1, 20))
def test_v1_round_trip(addrs: tuple[str, str], rport: int, lport: int, rest: bytes,
                       cut: int) -> None:
    header = encode_v1(addrs[0], rport, addrs[1], lport)
    parsed = parse_in_pieces(header + rest, cut)
    assert parsed == ProxyHeader(1, len(header), True, addrs[0], rport, addrs[1], lport)
    for end in range(len(header)):  # every strict prefix is "need more"
        assert parse_header(header[:end]) is None


@FAST
@given(st.one_of(st.tuples(ipv4, ipv4), st.tuples(ipv6, ipv6)), ports, ports, st.booleans(),
       st.lists(st.tuples(st.integers(0, 255).filter(lambda t: t != 0x20),
                          st.binary(max_size=20)), max_size=3),
       st.binary(max_size=40), st.integers(1, 30))
def test_v2_round_trip(addrs: tuple[str, str], rport: int, lport: int, ssl: bool,
                       tlvs: list[tuple[int, bytes]], rest: bytes, cut: int) -> None:
    extra = b"".join(bytes([t]) + struct.pack("!H", len(v)) + v for t, v in tlvs)
    header = encode_v2(addrs[0], rport, addrs[1], lport, ssl=ssl, tlvs=extra)
    parsed = parse_in_pieces(header + rest, cut)
    assert parsed == ProxyHeader(2, len(header), True, addrs[0], rport, addrs[1], lport, ssl)
    for end in range(len(header)):
        assert parse_header(header[:end]) is None


@FAST
@given(st.binary(max_size=200))
def test_garbage_is_need_more_a_header_or_a_header_error(data: bytes) -> None:
    try:
        parsed = parse_header(data)
    except HeaderError as e:
        assert e.log_text("127.0.0.1").endswith("rip=127.0.0.1)")
        return
    if parsed is not None:
        assert 0 < parsed.length <= len(data)


@FAST
@given(st.binary(min_size=1, max_size=120))
def test_anything_after_the_v2_signature(data: bytes) -> None:
    try:
        parse_header(V2_SIGNATURE + data)
    except HeaderError:
        pass


# Dovecot 2.3.19's log lines for these headers (pop3-login, haproxy = yes).
DOVECOT_ERRORS = [
    (b"PROXY TCP4 10.1.2.3 127.0.0.1 4567\r\n",
     "haproxy(v1): Client disconnected: Field for proxied local port is missing (rip=1.2.3.4)"),
    (b"PROXY TCP4 10.1.2.3 127.0.0.1 4567 99999\r\n",
     "haproxy(v1): Client disconnected: Proxied local port is invalid (port=`99999', rip=1.2.3.4)"),
    (b"PROXY TCP4 10.1.2.300 127.0.0.1 4567 110\r\n",
     "haproxy(v1): Client disconnected: Proxied remote address is invalid "
     "(address=`10.1.2.300', rip=1.2.3.4)"),
    (b"PROXY TCP6 10.1.2.3 127.0.0.1 4567 110\r\n",
     "haproxy(v1): Client disconnected: Proxied remote address is invalid "
     "(address=`10.1.2.3', rip=1.2.3.4)"),
    (b"PROXY TCP4 10.1.2.3 127.0.0.1 4567 110 extra\r\n",
     "haproxy(v1): Client disconnected: Header line has spurius extra field "
     "(field=`extra', rip=1.2.3.4)"),
    (b"GARBAGE\r\n", "haproxy: Client disconnected: Failed to read valid HAproxy data "
                     "(rip=1.2.3.4)"),
    (V2_SIGNATURE + bytes([0x31, 0x11]) + struct.pack("!H", 12) + bytes(12),
     "haproxy: Client disconnected: Unsupported protocol version (version=03, rip=1.2.3.4)"),
    (V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", 8) + bytes(8),
     "haproxy(v2): Client disconnected: IPv4 data is incomplete (rip=1.2.3.4)"),
]


@pytest.mark.parametrize(("data", "log"), DOVECOT_ERRORS)
def test_dovecots_error_texts(data: bytes, log: str) -> None:
    with pytest.raises(HeaderError) as e:
        parse_header(data)
    assert e.value.log_text("1.2.3.4") == log


def test_local_and_unknown_keep_the_real_addresses() -> None:
    assert parse_header(b"PROXY UNKNOWN\r\nrest") == ProxyHeader(1, 15, proxied=False)
    local = V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    assert parse_header(local + b"x") == ProxyHeader(2, 16, proxied=False)
    unix = V2_SIGNATURE + bytes([0x21, 0x31]) + struct.pack("!H", 216) + bytes(216)
    assert parse_header(unix) == ProxyHeader(2, 232, proxied=False)
