"""What a trusted proxy says about the client it forwards (IMAP ``ID`` fields, POP3 ``XCLIENT``).

A connection from ``login_trusted_networks`` (typically a Dovecot or cote proxy) may name the
real client: its address and port, the address it connected to, the session id and the
proxy TTL. The login process then uses those for auth and log lines, as Dovecot does. Untrusted
clients' fields are ignored. Sans-IO: parsing only; the server applies a :class:`Forwarded`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from dataclasses import dataclass, replace

MAX_SESSION_ID = 255


@dataclass(frozen=True, slots=True)
class Forwarded:
    """Fields to replace; None = keep."""

    remote_ip: str | None = None
    remote_port: int | None = None
    local_ip: str | None = None
    local_port: int | None = None
    session: str | None = None
    ttl: int | None = None

    def merged(self, newer: Forwarded) -> Forwarded:
        return replace(self, **{k: getattr(newer, k) for k in self.__slots__
                                if getattr(newer, k) is not None})


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return None


def _port(text: str) -> int | None:
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def from_imap_id(params: tuple[tuple[bytes, bytes | None], ...] | None) -> Forwarded:
    """The ``x-*`` fields of an IMAP ID from a trusted client; invalid values are ignored."""
    found = Forwarded()
    for key, raw in params or ():
        if raw is None:
            continue
        name, value = key.decode("utf-8", "replace").lower(), raw.decode("utf-8", "replace")
        update: Forwarded | None = None
        if name == "x-originating-ip" and _ip(value):
            update = Forwarded(remote_ip=_ip(value))
        elif name == "x-originating-port" and _port(value):
            update = Forwarded(remote_port=_port(value))
        elif name == "x-connected-ip" and _ip(value):
            update = Forwarded(local_ip=_ip(value))
        elif name == "x-connected-port" and _port(value):
            update = Forwarded(local_port=_port(value))
        elif name in ("x-session-id", "x-session-ext-id") and 0 < len(value) <= MAX_SESSION_ID:
            update = Forwarded(session=value)
        elif name == "x-proxy-ttl" and value.isdigit():
            update = Forwarded(ttl=int(value))
        if update is not None:
            found = found.merged(update)
    return found


def from_xclient(args: str) -> tuple[Forwarded, bool]:
    """POP3 ``XCLIENT name=value …``: what it sets, and whether every parameter was valid.

    Parameters before an invalid one still apply (Dovecot's behaviour); unknown names are
    ignored."""
    found = Forwarded()
    for word in args.split():
        name, _, value = word.partition("=")
        name = name.upper()
        update: Forwarded | None = Forwarded()
        if name == "ADDR":
            update = Forwarded(remote_ip=_ip(value)) if _ip(value) else None
        elif name == "PORT":
            update = Forwarded(remote_port=_port(value)) if _port(value) else None
        elif name == "SESSION":
            update = Forwarded(session=value) if 0 < len(value) <= MAX_SESSION_ID else None
        elif name == "TTL":
            update = Forwarded(ttl=int(value)) if value.isdigit() else None
        elif name == "FORWARD":
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                update = None
            else:
                update = Forwarded() if value else None
        if update is None:
            return found, False
        found = found.merged(update)
    return found, True
