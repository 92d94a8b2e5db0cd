"""The ssl_* settings reach the handshake: what ``openssl s_client`` sees for ssl_cipher_list,
ssl_prefer_server_ciphers, ssl_curve_list, ssl_dh, ssl_options = no_ticket and an encrypted
key with ssl_key_password. IMAP uses the global settings, POP3 a ``protocol pop3`` block with
others, so one server shows each setting on and off."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cote.demo import make_certificate
from tests.login2.tls_certs import Authority
from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle

PASSWORD = "s3cret key"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tlsset")
    ca = Authority(d, "setca")
    ecdsa = ca.server("ecdsa", "localhost", password=PASSWORD)
    make_certificate(d / "rsa.crt", d / "rsa.key", "localhost")
    dh = subprocess.run(["openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt",
                         "dh_param:ffdhe3072"], capture_output=True, check=True).stdout
    (d / "dh.pem").write_bytes(dh)
    return {"cert": ecdsa.cert, "key": ecdsa.key, "rsa_cert": d / "rsa.crt",
            "rsa_key": d / "rsa.key", "dh": d / "dh.pem"}


def conf(files: dict[str, Path], password: str) -> str:
    return f"""
ssl_cert = <{files['cert']}
ssl_key = <{files['key']}
ssl_key_password = {password}
ssl_min_protocol = TLSv1.2
ssl_cipher_list = ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256
ssl_curve_list = P-384:X25519
ssl_options = no_compression no_ticket
protocol pop3 {{
  ssl_cert = <{files['rsa_cert']}
  ssl_key = <{files['rsa_key']}
  ssl_cipher_list = ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES128-GCM-SHA256
  ssl_prefer_server_ciphers = yes
  ssl_curve_list = P-256
  ssl_dh = <{files['dh']}
  ssl_options =
}}
"""


@pytest.fixture(scope="module")
def cote(store: DovecotOracle, files: dict[str, Path]) -> Iterator[CoteServer]:
    server = CoteServer(mail_location=f"maildir:{store.dir}/mail/%u",
                        passwd_file=store.dir / "users", protocols="imap pop3", tls=True,
                        extra_conf=conf(files, PASSWORD))
    try:
        yield server.start()
    finally:
        server.cleanup()


def s_client(port: int, *args: str) -> str:
    """TLS 1.2 (where ciphers, DH and tickets are visible); the output with the handshake."""
    done = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2",
                           *args], input=b"", capture_output=True, timeout=20)
    return done.stdout.decode() + done.stderr.decode()


def cipher(out: str) -> str | None:
    found = re.search(r"Cipher is (\S+)", out)
    return None if found is None or found.group(1) == "(NONE)" else found.group(1)


def test_cipher_not_in_the_list_is_refused(cote: CoteServer) -> None:
    port = cote.ports["imaps"]
    assert cipher(s_client(port, "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305")) is None
    assert cipher(s_client(port, "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")) == \
        "ECDHE-ECDSA-AES128-GCM-SHA256"


def test_prefer_server_ciphers(cote: CoteServer) -> None:
    # The client prefers AES128: without the setting (IMAP) it gets it, with it (POP3) the
    # server's first choice wins.
    assert cipher(s_client(cote.ports["imaps"], "-cipher",
                           "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384")) == \
        "ECDHE-ECDSA-AES128-GCM-SHA256"
    assert cipher(s_client(cote.ports["pop3s"], "-cipher",
                           "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384")) == \
        "ECDHE-RSA-AES256-GCM-SHA384"


def test_curve_list(cote: CoteServer) -> None:
    imaps, pop3s = cote.ports["imaps"], cote.ports["pop3s"]
    assert cipher(s_client(imaps, "-groups", "P-256")) is None
    # (TLS 1.2 ECDSA: the certificate's own curve, P-256, must be among the client's too.)
    out = s_client(imaps, "-groups", "P-256:P-384")
    assert cipher(out) is not None and "Server Temp Key: ECDH, secp384r1" in out
    # POP3 has no P-384 for ECDHE: only its DHE cipher is left.
    assert cipher(s_client(pop3s, "-groups", "P-384")) == "DHE-RSA-AES128-GCM-SHA256"
    assert "Server Temp Key: ECDH, prime256v1" in s_client(pop3s, "-groups", "P-256")
    # TLS 1.3 key shares obey the same list.
    assert "Server Temp Key: X25519" in subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{imaps}", "-tls1_3"], input=b"",
        capture_output=True, timeout=20).stdout.decode()


def test_dh_parameters(cote: CoteServer) -> None:
    out = s_client(cote.ports["pop3s"], "-cipher", "DHE-RSA-AES128-GCM-SHA256")
    assert cipher(out) == "DHE-RSA-AES128-GCM-SHA256"
    assert "Server Temp Key: DH, 3072 bits" in out, out  # ffdhe3072 from ssl_dh


def test_no_ticket(cote: CoteServer) -> None:
    with_tickets = s_client(cote.ports["pop3s"])
    assert "TLS session ticket lifetime hint" in with_tickets
    without = s_client(cote.ports["imaps"])
    assert cipher(without) is not None and "TLS session ticket" not in without


def test_encrypted_key_needs_its_password(store: DovecotOracle, files: dict[str, Path]) -> None:
    assert b"ENCRYPTED PRIVATE KEY" in files["key"].read_bytes()  # the module's server used it
    server = CoteServer(mail_location=f"maildir:{store.dir}/mail/%u",
                        passwd_file=store.dir / "users", protocols="imap", tls=True,
                        extra_conf=conf(files, "wrong password"))
    try:
        with pytest.raises(RuntimeError, match="ssl_cert/ssl_key"):
            server.start()
    finally:
        server.cleanup()
