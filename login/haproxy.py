"""The HAProxy PROXY protocol header (v1 text, v2 binary) on ``haproxy = yes`` listeners.

A load balancer in front of the login processes opens each connection with a header naming
the real client; the login process uses those addresses for everything (log lines, the auth
request's rip, trusted networks). Sans-IO: :func:`parse_header` takes the bytes received so
far and answers "need more", a :class:`ProxyHeader`, or raises :class:`HeaderError` with
Dovecot's texts for its log line.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107  # including CRLF (the protocol's limit)
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER = 16
PP2_TYPE_SSL = 0x20
PP2_CLIENT_SSL = 0x01
FAMILY_TCP4 = 0x11
FAMILY_TCP6 = 0x21


class HeaderError(ValueError):
    """An invalid header; ``log_text(rip)`` is Dovecot's log line for it."""

    def __init__(self, version: int | None, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.version = version
        self.message = message
        self.detail = detail

    def log_text(self, real_remote_ip: str) -> str:
        where = f"haproxy(v{self.version})" if self.version else "haproxy"
        detail = f"{self.detail}, " if self.detail else ""
        return f"{where}: Client disconnected: {self.message} ({detail}rip={real_remote_ip})"


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed header. ``proxied`` False (LOCAL, UNKNOWN, other families): keep the real
    connection's addresses."""

    version: int
    length: int  # bytes the header took; the rest belongs to the client's protocol
    proxied: bool
    remote_ip: str = ""
    remote_port: int = 0
    local_ip: str = ""
    local_port: int = 0
    ssl: bool = False  # v2 PP2_TYPE_SSL with the client-used-SSL bit


def parse_header(data: bytes) -> ProxyHeader | None:
    """The header at the start of ``data``; None when more bytes are needed."""
    if data[:len(V2_SIGNATURE)] == V2_SIGNATURE[:len(data)] and data:
        return _parse_v2(data)
    if data[:len(V1_PREFIX)] == V1_PREFIX[:len(data)]:
        return _parse_v1(data)
    raise HeaderError(None, "Failed to read valid HAproxy data")


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end < 0:
        if len(data) >= V1_MAX_LENGTH:
            raise HeaderError(None, "Failed to read valid HAproxy data")
        return None
    try:
        fields = data[len(V1_PREFIX):end].decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise HeaderError(1, "Header line is not ASCII") from None
    protocol = fields[0]
    if protocol == "UNKNOWN":
        return ProxyHeader(1, end + 2, proxied=False)
    if protocol not in ("TCP4", "TCP6"):
        raise HeaderError(1, "Unknown/unsupported protocol", f"protocol=`{protocol}'")
    names = ("remote address", "local address", "remote port", "local port")
    values = fields[1:]
    for i, name in enumerate(names):
        if i >= len(values) or values[i] == "":
            raise HeaderError(1, f"Field for proxied {name} is missing")
    if len(values) > len(names):
        raise HeaderError(1, "Header line has spurius extra field", f"field=`{values[4]}'")
    family = ipaddress.IPv4Address if protocol == "TCP4" else ipaddress.IPv6Address
    addresses = []
    for name, text in (("remote", values[0]), ("local", values[1])):
        try:
            addresses.append(str(family(text)))
        except ValueError:
            raise HeaderError(1, f"Proxied {name} address is invalid",
                              f"address=`{text}'") from None
    ports = []
    for name, text in (("remote", values[2]), ("local", values[3])):
        if not text.isdigit() or not 0 < int(text) < 65536 or text != str(int(text)):
            raise HeaderError(1, f"Proxied {name} port is invalid", f"port=`{text}'")
        ports.append(int(text))
    return ProxyHeader(1, end + 2, True, addresses[0], ports[0], addresses[1], ports[1])


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if len(data) < V2_HEADER:
        return None
    version_command, family, length = data[12], data[13], struct.unpack("!H", data[14:16])[0]
    version, command = version_command >> 4, version_command & 0x0F
    if version != 2:
        raise HeaderError(None, "Unsupported protocol version", f"version={version:02x}")
    if command > 1:
        raise HeaderError(2, "Unsupported command", f"command={command:02x}")
    if len(data) < V2_HEADER + length:
        return None
    body = data[V2_HEADER:V2_HEADER + length]
    total = V2_HEADER + length
    if command == 0:  # LOCAL: the proxy's own connection (health checks)
        return ProxyHeader(2, total, proxied=False)
    if family == FAMILY_TCP4:
        if length < 12:
            raise HeaderError(2, "IPv4 data is incomplete")
        src, dst = str(ipaddress.IPv4Address(body[0:4])), str(ipaddress.IPv4Address(body[4:8]))
        sport, dport = struct.unpack("!HH", body[8:12])
        tlvs = body[12:]
    elif family == FAMILY_TCP6:
        if length < 36:
            raise HeaderError(2, "IPv6 data is incomplete")
        src = str(ipaddress.IPv6Address(body[0:16]))
        dst = str(ipaddress.IPv6Address(body[16:32]))
        sport, dport = struct.unpack("!HH", body[32:36])
        tlvs = body[36:]
    else:  # UNSPEC, UDP, UNIX: nothing we can use as an IP address
        return ProxyHeader(2, total, proxied=False)
    return ProxyHeader(2, total, True, src, sport, dst, dport, ssl=_ssl_flag(tlvs))


def _ssl_flag(tlvs: bytes) -> bool:
    ssl = False
    pos = 0
    while pos < len(tlvs):
        if pos + 3 > len(tlvs):
            raise HeaderError(2, "TLV data is incomplete")
        kind, size = tlvs[pos], struct.unpack("!H", tlvs[pos + 1:pos + 3])[0]
        value = tlvs[pos + 3:pos + 3 + size]
        if len(value) < size:
            raise HeaderError(2, "TLV data is incomplete")
        if kind == PP2_TYPE_SSL:
            if size < 1:
                raise HeaderError(2, "SSL TLV is incomplete")
            ssl = bool(value[0] & PP2_CLIENT_SSL)
        pos += 3 + size
    return ssl


def encode_v1(remote_ip: str, remote_port: int, local_ip: str, local_port: int) -> bytes:
    """A v1 header (what a load balancer sends; for tests and tools)."""
    family = "TCP6" if ":" in remote_ip else "TCP4"
    return f"PROXY {family} {remote_ip} {local_ip} {remote_port} {local_port}\r\n".encode()


def encode_v2(remote_ip: str, remote_port: int, local_ip: str, local_port: int, *,
              ssl: bool = False, tlvs: bytes = b"") -> bytes:
    """A v2 PROXY header (for tests and tools)."""
    src, dst = ipaddress.ip_address(remote_ip), ipaddress.ip_address(local_ip)
    family = FAMILY_TCP6 if src.version == 6 else FAMILY_TCP4
    body = src.packed + dst.packed + struct.pack("!HH", remote_port, local_port)
    if ssl:
        body += bytes([PP2_TYPE_SSL]) + struct.pack("!H", 5) + bytes([PP2_CLIENT_SSL]) + bytes(4)
    body += tlvs
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(body)) + body
