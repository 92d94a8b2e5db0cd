"""SNI: ``local_name`` blocks give their own certificate, picked by the client's server_name,
on implicit TLS and after STARTTLS/STLS; the default certificate otherwise. Dovecot, given the
same config and certificates, must hand out the same ones. Certificates are reloaded on HUP."""

from __future__ import annotations

import re
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.login2.tls_certs import Authority, Pair, common_name
from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle
from tests.support.env import free_port

NAMES = {"mail.example.com": "mail.example.com", "a.example.org": "ab.example.org",
         "b.example.org": "ab.example.org", "x.wild.example.net": "wild.example.net",
         "other.example.com": "default.example", None: "default.example"}


class Certs:
    def __init__(self, directory: Path) -> None:
        self.ca = Authority(directory, "snica")
        self.default = self.ca.server("default", "default.example")
        self.mail = self.ca.server("mail", "mail.example.com")
        self.ab = self.ca.server("ab", "ab.example.org", "a.example.org", "b.example.org")
        self.wild = self.ca.server("wild", "wild.example.net", "*.wild.example.net")

    def conf(self) -> str:
        def block(names: str, pair: Pair) -> str:
            return (f"local_name {names} {{\n  ssl_cert = <{pair.cert}\n"
                    f"  ssl_key = <{pair.key}\n}}\n")
        return (f"ssl = yes\nssl_cert = <{self.default.cert}\nssl_key = <{self.default.key}\n"
                + block("mail.example.com", self.mail)
                + block('"a.example.org b.example.org"', self.ab)
                + block("*.wild.example.net", self.wild))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("sni"))


@pytest.fixture(scope="module")
def cote(store: DovecotOracle, certs: Certs) -> Iterator[CoteServer]:
    server = CoteServer(mail_location=f"maildir:{store.dir}/mail/%u",
                        passwd_file=store.dir / "users", protocols="imap pop3", tls=True,
                        extra_conf=certs.conf())
    try:
        yield server.start()
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def dovecot(certs: Certs) -> Iterator[DovecotOracle]:
    imaps = free_port()
    dc = DovecotOracle(users={"u1": "p1"}, extra_conf=certs.conf() + f"""
service imap-login {{
  inet_listener imapsx {{
    port = {imaps}
    ssl = yes
  }}
}}
""")
    dc.ports["imaps"] = imaps
    try:
        yield dc.start()
    finally:
        dc.cleanup()


def client_context(ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    return context


def implicit_cn(port: int, ca: Path, name: str | None) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            client_context(ca).wrap_socket(raw, server_hostname=name) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        assert tls.recv(100).startswith((b"* OK", b"+OK"))
        return common_name(der)


def starttls_cn(port: int, ca: Path, name: str | None, command: bytes) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        f = raw.makefile("rb")
        assert f.readline().startswith((b"* OK", b"+OK"))
        raw.sendall(command)
        assert f.readline().startswith((b"a OK", b"+OK"))
        with client_context(ca).wrap_socket(raw, server_hostname=name) as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            tls.sendall(b"a CAPABILITY\r\n" if command.startswith(b"a ") else b"CAPA\r\n")
            assert tls.recv(100).startswith((b"* CAPABILITY", b"+OK"))
            return common_name(der)


@pytest.mark.parametrize("name", list(NAMES))
def test_implicit_tls_picks_the_certificate_by_name(cote: CoteServer, dovecot: DovecotOracle,
                                                    certs: Certs, name: str | None) -> None:
    assert implicit_cn(cote.ports["imaps"], certs.ca.ca_path, name) == NAMES[name]
    assert implicit_cn(cote.ports["pop3s"], certs.ca.ca_path, name) == NAMES[name]
    assert implicit_cn(dovecot.ports["imaps"], certs.ca.ca_path, name) == NAMES[name]


@pytest.mark.parametrize("name", ["mail.example.com", "b.example.org", None])
def test_starttls_and_stls_pick_the_certificate_by_name(cote: CoteServer, certs: Certs,
                                                        name: str | None) -> None:
    ca = certs.ca.ca_path
    assert starttls_cn(cote.ports["imap"], ca, name, b"a STARTTLS\r\n") == NAMES[name]
    assert starttls_cn(cote.ports["pop3"], ca, name, b"STLS\r\n") == NAMES[name]


def s_client_subject(port: int, ca: Path, name: str, *extra: str) -> str:
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                          "-servername", name, "-CAfile", str(ca), *extra],
                         input=b"", capture_output=True, timeout=20).stdout.decode()
    found = re.search(r"^subject=.*?CN ?= ?(\S+)", out, re.M)
    assert found, out
    assert "Verify return code: 0 (ok)" in out, out
    return found.group(1)


def test_openssl_s_client_starttls_with_servername(cote: CoteServer, certs: Certs) -> None:
    ca = certs.ca.ca_path
    assert s_client_subject(cote.ports["imap"], ca, "a.example.org",
                            "-starttls", "imap") == "ab.example.org"
    assert s_client_subject(cote.ports["pop3"], ca, "mail.example.com",
                            "-starttls", "pop3") == "mail.example.com"


def test_login_after_sni(cote: CoteServer, certs: Certs) -> None:
    """The certificate switch happens inside the handshake: the session goes on normally."""
    with socket.create_connection(("127.0.0.1", cote.ports["imaps"]), timeout=10) as raw, \
            client_context(certs.ca.ca_path).wrap_socket(
                raw, server_hostname="mail.example.com") as tls:
        f = tls.makefile("rb")
        assert f.readline().startswith(b"* OK")
        tls.sendall(b"a LOGIN u1 p1\r\n")
        assert f.readline().startswith(b"a OK ")
        tls.sendall(b"b LOGOUT\r\n")
        assert f.readline().startswith(b"* BYE")


def test_certificates_reloaded_on_hup(store: DovecotOracle, tmp_path: Path) -> None:
    first = Certs(tmp_path / "first")
    server = CoteServer(mail_location=f"maildir:{store.dir}/mail/%u",
                        passwd_file=store.dir / "users", protocols="imap", tls=True,
                        extra_conf=first.conf())
    try:
        server.start()
        port, ca = server.ports["imaps"], first.ca.ca_path
        assert implicit_cn(port, ca, "mail.example.com") == "mail.example.com"
        assert implicit_cn(port, ca, None) == "default.example"
        # New certificates from the same CA replace the files in place.
        for stem, names in (("default", ("renewed-default.example",)),
                            ("mail", ("renewed-mail.example.com", "mail.example.com"))):
            fresh = first.ca.server(f"{stem}-new", *names)
            (tmp_path / "first" / f"{stem}.crt").write_bytes(fresh.cert.read_bytes())
            (tmp_path / "first" / f"{stem}.key").write_bytes(fresh.key.read_bytes())
        assert server.process is not None
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        seen: tuple[str, str] = ("", "")
        while time.monotonic() < deadline:
            try:
                seen = (implicit_cn(port, ca, "mail.example.com"), implicit_cn(port, ca, None))
            except (OSError, ssl.SSLError, AssertionError):
                pass
            if seen == ("renewed-mail.example.com", "renewed-default.example"):
                break
            time.sleep(0.2)
        assert seen == ("renewed-mail.example.com", "renewed-default.example")
    finally:
        server.cleanup()
