"""HAProxy in TCP mode in front of an ``ssl = yes`` listener: the PROXY header comes in clear,
then the client's TLS handshake, which must reach the TLS layer untouched."""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Iterator

import pytest

from cote.login.haproxy import encode_v1, encode_v2
from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle
from tests.support.env import free_port


@pytest.fixture(scope="module")
def cote(store: DovecotOracle) -> Iterator[CoteServer]:
    port = free_port()
    server = CoteServer(mail_location=f"maildir:{store.dir}/mail/%u",
                        passwd_file=store.dir / "users", protocols="imap", tls=True,
                        extra_conf=f"""
haproxy_trusted_networks = 127.0.0.1
service imap-login {{
  inet_listener imapsh {{
    port = {port}
    ssl = yes
    haproxy = yes
  }}
}}
""")
    server.ports["imapsh"] = port
    try:
        yield server.start()
    finally:
        server.cleanup()


class BioClient:
    """A TLS client over a plain socket through memory BIOs, so that the test decides what
    travels in which packet (here: the PROXY header and the ClientHello in one)."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing)

    def client_hello(self) -> bytes:
        with pytest.raises(ssl.SSLWantReadError):
            self.tls.do_handshake()
        return self.outgoing.read()

    def _pump(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.incoming.write(data)

    def handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outgoing.read())
                self._pump()
        self.sock.sendall(self.outgoing.read())

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self.sock.sendall(self.outgoing.read())

    def recv_line(self) -> bytes:
        data = b""
        while not data.endswith(b"\r\n"):
            try:
                data += self.tls.read(65536)
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outgoing.read())
                self._pump()
        return data


@pytest.mark.parametrize("header", [encode_v1("203.0.113.5", 40000, "127.0.0.1", 993),
                                    encode_v2("203.0.113.5", 40000, "127.0.0.1", 993)])
def test_tls_after_the_proxy_header(cote: CoteServer, header: bytes) -> None:
    context = ssl.create_default_context(cafile=str(cote.cert))
    context.check_hostname = False
    with socket.create_connection(("127.0.0.1", cote.ports["imapsh"]), timeout=10) as raw:
        client = BioClient(raw, context)
        raw.sendall(header + client.client_hello())  # one write: the header is taken exactly
        client.handshake()
        assert client.recv_line().startswith(b"* OK [CAPABILITY ")
        client.send(b"a LOGIN u1 p1\r\n")
        assert client.recv_line().startswith(b"a OK ")
        client.send(b"b LOGOUT\r\n")
        assert client.recv_line().startswith(b"* BYE ")
    lines = cote.wait_for_log("imap-login: Info: Login: user=<u1>")
    assert any(re.search(r"rip=203\.0\.113\.5, lip=127\.0\.0\.1, mpid=\d+, TLS, ", x)
               for x in lines), lines
