"""Client certificates: ``ssl_verify_client_cert`` with ``ssl_ca`` (CA + CRL), EXTERNAL, and
``auth_ssl_require_client_cert``. cote and Dovecot get the same config and certificates; each
client (valid cert, none, another CA's, a revoked one) must see the same answers from both."""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.login2.tls_certs import Authority, Pair
from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle
from tests.support.env import free_port


class Certs:
    def __init__(self, directory: Path) -> None:
        self.ca = Authority(directory, "clientca")
        self.server = self.ca.server("server", "localhost")
        self.valid = self.ca.client("valid", "certu")
        # POP3 reads the user from x500UniqueIdentifier (ssl_cert_username_field).
        self.unique = self.ca.client("unique", "Some Person", unique_id="certu")
        revoked = self.ca.client("revoked", "certu")
        self.ca.revoked.append(x509_serial(revoked))
        self.revoked = revoked
        self.untrusted = Authority(directory / "other", "otherca").client("other", "certu")
        self.ca_file = self.ca.ca_with_crl(directory / "ca-crl.pem")

    def conf(self) -> str:
        return f"""
ssl = yes
ssl_cert = <{self.server.cert}
ssl_key = <{self.server.key}
ssl_ca = <{self.ca_file}
ssl_verify_client_cert = yes
auth_ssl_require_client_cert = yes
auth_ssl_username_from_cert = yes
auth_mechanisms = plain login external
protocol pop3 {{
  ssl_cert_username_field = x500UniqueIdentifier
}}
"""


def x509_serial(pair: Pair) -> int:
    return x509.load_pem_x509_certificate(pair.cert.read_bytes()).serial_number


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("clientcert"))


@pytest.fixture(scope="module")
def users() -> Iterator[DovecotOracle]:
    """certu has no password of its own (``nopassword``): only its certificate logs it in."""
    dc = DovecotOracle(users={"u1": "p1", "certu": "unused"},
                       passwd_extra={"certu": "nopassword"}, stored_passwords={"certu": ""})
    dc.write_config()
    try:
        yield dc
    finally:
        dc.cleanup()


@pytest.fixture(scope="module")
def cote(users: DovecotOracle, certs: Certs) -> Iterator[CoteServer]:
    server = CoteServer(mail_location=f"maildir:{users.dir}/mail/%u",
                        passwd_file=users.dir / "users", protocols="imap pop3", tls=True,
                        auth_mechanisms="plain login external", extra_conf=certs.conf())
    try:
        yield server.start()
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def dovecot(users: DovecotOracle, certs: Certs) -> Iterator[DovecotOracle]:
    imaps, pop3s = free_port(), free_port()
    dc = DovecotOracle(users={"u1": "p1", "certu": "unused"},
                       passwd_extra={"certu": "nopassword"},
                       stored_passwords={"certu": ""}, extra_conf=certs.conf() + f"""
service imap-login {{
  inet_listener imapsx {{
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3sx {{
    port = {pop3s}
    ssl = yes
  }}
}}
""")
    dc.ports["imaps"], dc.ports["pop3s"] = imaps, pop3s
    try:
        yield dc.start()
    finally:
        dc.cleanup()


def dialogue(port: int, certs: Certs, client: Pair | None, lines: list[bytes]) -> list[str]:
    """Each line's answer (up to its tagged/+OK/-ERR line), greeting first."""
    context = ssl.create_default_context(cafile=str(certs.ca.ca_path))
    context.check_hostname = False
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        f = tls.makefile("rb")
        answers.append(f.readline().decode())
        for line in lines:
            tls.sendall(line)
            answer = got = f.readline().decode()
            if line == b"CAPA\r\n" and got.startswith("+OK"):
                while got not in ("", ".\r\n"):
                    got = f.readline().decode()
                    answer += got
            while got.startswith("* "):
                got = f.readline().decode()
                answer += got
            answers.append(answer)
    return answers


def normalized(answers: list[str]) -> list[str]:
    """Server names, post-login capabilities and log-in texts are the servers' own."""
    out = []
    for a in answers:
        a = re.sub(r"\[CAPABILITY [^\]]*\] Logged in", "[CAPABILITY …] Logged in", a)
        a = re.sub(r"\* CAPABILITY [^\r]*\r\n(\w+ OK Logged in)", r"* CAPABILITY …\r\n\1", a)
        a = re.sub(r"(\* OK \[CAPABILITY [^\]]*\]) .*", r"\1 <greeting>", a)
        a = re.sub(r"^\+OK .*ready.*", "+OK <greeting>", a)
        out.append(a)
    return out


IMAP = [b"a CAPABILITY\r\n", b"b AUTHENTICATE EXTERNAL =\r\n"]
POP3 = [b"CAPA\r\n", b"AUTH EXTERNAL =\r\n"]


@pytest.mark.parametrize("who", ["valid", "none", "untrusted", "revoked"])
def test_imap_external_as_dovecot(cote: CoteServer, dovecot: DovecotOracle, certs: Certs,
                                  who: str) -> None:
    client = {"valid": certs.valid, "none": None, "untrusted": certs.untrusted,
              "revoked": certs.revoked}[who]
    theirs = normalized(dialogue(dovecot.ports["imaps"], certs, client, IMAP))
    ours = normalized(dialogue(cote.ports["imaps"], certs, client, IMAP))
    assert ours == theirs
    ok = "\nb OK " in "\n" + theirs[-1]
    assert ok == (who == "valid"), theirs


@pytest.mark.parametrize("who", ["unique", "none", "untrusted"])
def test_pop3_external_with_username_field_as_dovecot(
        cote: CoteServer, dovecot: DovecotOracle, certs: Certs, who: str) -> None:
    client = {"unique": certs.unique, "none": None, "untrusted": certs.untrusted}[who]
    theirs = normalized(dialogue(dovecot.ports["pop3s"], certs, client, POP3))
    ours = normalized(dialogue(cote.ports["pop3s"], certs, client, POP3))
    assert ours == theirs
    assert theirs[-1].startswith("+OK") == (who == "unique"), theirs


def test_password_login_needs_a_certificate_too(cote: CoteServer, dovecot: DovecotOracle,
                                                certs: Certs) -> None:
    """auth_ssl_require_client_cert refuses every mechanism without a valid certificate."""
    lines = [b"a LOGIN u1 p1\r\n"]
    theirs = normalized(dialogue(dovecot.ports["imaps"], certs, None, lines))
    ours = normalized(dialogue(cote.ports["imaps"], certs, None, lines))
    assert ours == theirs
    assert theirs[-1].startswith("a NO ")
    assert dialogue(cote.ports["imaps"], certs, certs.valid, lines)[-1].startswith("a OK ")


def test_disconnect_line_names_the_certificate_problem(cote: CoteServer, certs: Certs) -> None:
    dialogue(cote.ports["imaps"], certs, certs.untrusted, [b"a LOGIN u1 p1\r\n"])
    assert cote.wait_for_log("(client sent an invalid cert)")
    dialogue(cote.ports["imaps"], certs, None, [b"a LOGIN u1 p1\r\n"])
    assert cote.wait_for_log("(client didn't send a cert)")
