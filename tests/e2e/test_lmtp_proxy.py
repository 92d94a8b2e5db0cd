"""lmtp_proxy = yes: recipients whose passdb entry has ``proxy``/``host``/``port`` go to a
backend LMTP server (a real Dovecot), the others are delivered locally. Dovecot itself as the
proxy in front of the same backend is the reference: replies and the files the backend stores
must agree (Dovecot's proxy adds its own Received header; ``destuser`` renames the recipient;
a backend's refusal is relayed)."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.test_lmtp_delivery import SESSION, converse, normalise
from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle

PROXY_CONF = "lmtp_proxy = yes\n"


@dataclass
class Servers:
    backend: DovecotOracle
    dovecot: DovecotOracle  # Dovecot as the proxy
    cote: CoteServer  # cote as the proxy (same passwd-file, its own local store)


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    backend = DovecotOracle(users={"remote1": "x", "other": "x"}).start()
    port = backend.ports["lmtp"]
    proxied = f"proxy=y host=127.0.0.1 port={port}"
    dc = DovecotOracle(users={"remote1": "x", "local1": "x", "renamed": "x", "ghost": "x",
                              "deadend": "x"},
                       passwd_extra={"remote1": proxied, "renamed": f"{proxied} destuser=other",
                                     "ghost": proxied,
                                     "deadend": "proxy=y host=127.0.0.1 port=1"},
                       extra_conf=PROXY_CONF).start()
    cote = CoteServer(mail_location=f"maildir:{dc.dir}/mail/%u", passwd_file=dc.dir / "users",
                      protocols="lmtp", extra_conf=PROXY_CONF)
    try:
        cote.start()
        yield Servers(backend, dc, cote)
    finally:
        cote.cleanup()
        dc.cleanup()
        backend.cleanup()


def files(maildir: Path) -> list[Path]:
    found = [f for sub in ("new", "cur") if (maildir / sub).exists()
             for f in (maildir / sub).iterdir()]
    return sorted(found, key=lambda p: p.name)


def masked(replies: bytes) -> bytes:
    return SESSION.sub(rb"\1ID\3 Saved", replies.split(b"\r\n", 1)[1])


def run(port: int, rcpts: list[str], tag: str) -> bytes:
    lines = [b"LHLO c\r\nMAIL FROM:<s@example.com> BODY=8BITMIME\r\n",
             *[f"RCPT TO:<{r}>\r\n".encode() for r in rcpts], b"DATA\r\n",
             f"Subject: {tag}\r\nMessage-ID: <{tag}@x>\r\n\r\nbody\r\n..dot\r\n.\r\n".encode(),
             b"QUIT\r\n"]
    return converse(socket.create_connection(("127.0.0.1", port)), lines)


def backend_copies(servers: Servers, user: str, tag: str) -> list[bytes]:
    return [normalise(f.read_bytes()) for f in files(servers.backend.user_maildir(user))
            if f"<{tag}@x>".encode() in f.read_bytes()]


@pytest.mark.parametrize("rcpts", [
    ["remote1"],
    ["remote1", "local1", "renamed", "ghost", "nobody"],
], ids=["one proxied recipient", "proxied, local, destuser, refused by the backend, unknown"])
def test_proxy_matches_dovecot(servers: Servers, rcpts: list[str]) -> None:
    tag = f"px{len(rcpts)}"
    theirs = run(servers.dovecot.ports["lmtp"], rcpts, tag + "d")
    ours = run(servers.cote.ports["lmtp"], rcpts, tag + "c")
    assert masked(ours) == masked(theirs)
    assert b"250 2.0.0 <remote1> " in theirs
    for user in ("remote1", "other"):
        if user == "other" and "renamed" not in rcpts:
            continue
        their_copy = backend_copies(servers, user, tag + "d")
        our_copy = backend_copies(servers, user, tag + "c")
        assert len(their_copy) == len(our_copy) == 1
        assert our_copy[0] == their_copy[0].replace(f"{tag}d".encode(), f"{tag}c".encode())
        assert our_copy[0].count(b"Received: ") == 2
    if "local1" in rcpts:
        local = [f.read_bytes() for f in files(servers.dovecot.user_maildir("local1"))]
        assert sum(f"<{tag}c@x>".encode() in x for x in local) == 1
        assert sum(f"<{tag}d@x>".encode() in x for x in local) == 1


def test_unreachable_backend_is_a_temporary_failure(servers: Servers) -> None:
    """A dead backend: 451 at RCPT, nothing stored, the local recipient still served."""
    out = run(servers.cote.ports["lmtp"], ["deadend", "local1"], "dead")
    assert b"451 4.4.0 <deadend> Failed to connect to remote server" in out
    assert re.search(rb"250 2.0.0 <local1> \S+ Saved", out), out
