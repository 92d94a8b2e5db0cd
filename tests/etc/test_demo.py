"""The demo generator (cote.demo): its config is one that Debian's Dovecot accepts and serves
with (IMAP, IMAPS, POP3S, LMTP, ManageSieve), its password hash and certificate are real, and
running it again keeps the certificate, the users file and the mail."""

from __future__ import annotations

import imaplib
import poplib
import re
import smtplib
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cote.demo import DEFAULT_PORTS, DEMO_PASSWORD, DEMO_USER, Demo, write_demo
from tests.etc.conftest import (
    REPO,
    require_dovecot,
    run_coteconf,
    run_doveconf,
    settings_lines,
    start_dovecot,
    stop,
)
from tests.support.dovecot import DOVEADM
from tests.support.env import free_port, mail_user, remove_dir, server_dir

pytestmark = pytest.mark.oracle


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    require_dovecot()
    directory = server_dir("demo")
    setup = write_demo(directory, ports={name: free_port() for name in DEFAULT_PORTS},
                       mail_account=mail_user().pw_name)
    yield setup
    remove_dir(directory)


@pytest.fixture(scope="module")
def running(demo: Demo) -> Iterator[Demo]:
    """Debian's Dovecot serving the demo config unchanged."""
    proc = start_dovecot(demo.config, demo.ports["imap"], demo.log)
    yield demo
    stop(proc)


def tls_context(demo: Demo) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(demo.cert))
    ctx.check_hostname = True
    return ctx


def test_doveconf_accepts_the_demo_config(demo: Demo) -> None:
    proc = run_doveconf(demo.config, "-n")
    assert proc.returncode == 0, proc.stderr
    assert not proc.stderr
    lines = settings_lines(proc.stdout)
    assert "listen = 127.0.0.1" in lines
    assert f"mail_location = maildir:{demo.mail}/%n" in lines


def test_coteconf_prints_what_doveconf_prints(demo: Demo) -> None:
    mine = run_coteconf(demo.config, "-n")
    assert mine.returncode == 0, mine.stderr
    assert settings_lines(mine.stdout) == settings_lines(run_doveconf(demo.config, "-n").stdout)


def test_ports_are_the_documented_ones_by_default(tmp_path: Path) -> None:
    assert dict(DEFAULT_PORTS) == {"imap": 10143, "imaps": 10993, "pop3": 10110,
                                   "pop3s": 10995, "lmtp": 10024, "sieve": 14190}


def test_password_hash_verifies_with_doveadm(demo: Demo) -> None:
    name, stored = demo.users.read_text().split(":")[:2]
    assert name == DEMO_USER
    assert stored.startswith("{SHA512-CRYPT}$6$")
    ok = subprocess.run([DOVEADM, "pw", "-t", stored, "-p", DEMO_PASSWORD],
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "(verified)" in ok.stdout
    bad = subprocess.run([DOVEADM, "pw", "-t", stored, "-p", "not-demo"],
                         capture_output=True, text=True, check=False)
    assert bad.returncode != 0


def test_key_file_is_private(demo: Demo) -> None:
    assert demo.key.stat().st_mode & 0o077 == 0
    assert demo.users.stat().st_mode & 0o007 == 0


def test_certificate_and_key_serve_tls(running: Demo) -> None:
    with socket.create_connection(("127.0.0.1", running.ports["imaps"]), timeout=5) as raw, \
            tls_context(running).wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        assert tls.recv(100).startswith(b"* OK")


def test_demo_user_logs_in_over_imap_and_imaps(running: Demo) -> None:
    with imaplib.IMAP4("127.0.0.1", running.ports["imap"]) as imap:
        imap.starttls(tls_context(running))
        assert imap.login(DEMO_USER, DEMO_PASSWORD)[0] == "OK"
    with imaplib.IMAP4_SSL("127.0.0.1", running.ports["imaps"],
                           ssl_context=tls_context(running)) as imap:
        assert imap.login(DEMO_USER, DEMO_PASSWORD)[0] == "OK"
        typ, listing = imap.list()
        assert typ == "OK"
        names = b" ".join(x for x in listing if isinstance(x, bytes))
        for special in (b"Drafts", b"Sent", b"Trash", b"Junk"):
            assert special in names


def test_lmtp_delivery_lands_in_the_maildir_and_pop3s_sees_it(running: Demo) -> None:
    with smtplib.LMTP("127.0.0.1", running.ports["lmtp"], local_hostname="localhost") as lmtp:
        refused = lmtp.sendmail("sender@example.org", [DEMO_USER],
                                b"Subject: demo test\r\n\r\nhello from the test\r\n")
        assert refused == {}
    new = list((running.mail / DEMO_USER / "new").iterdir())
    assert new
    assert any(b"hello from the test" in p.read_bytes() for p in new)
    pop = poplib.POP3_SSL("127.0.0.1", running.ports["pop3s"], context=tls_context(running))
    try:
        pop.user(DEMO_USER)
        pop.pass_(DEMO_PASSWORD)
        assert pop.stat()[0] >= 1
    finally:
        pop.quit()


def test_managesieve_answers_on_its_port(running: Demo) -> None:
    with socket.create_connection(("127.0.0.1", running.ports["sieve"]), timeout=5) as s:
        greeting = b""
        while b"OK" not in greeting:
            chunk = s.recv(4096)
            assert chunk
            greeting += chunk
    assert b'"IMPLEMENTATION"' in greeting and b'"STARTTLS"' in greeting


def test_wrong_password_is_refused(running: Demo) -> None:
    # Last of the server tests: a failure makes Dovecot delay the next logins from this IP.
    with pytest.raises(imaplib.IMAP4.error), imaplib.IMAP4_SSL(
            "127.0.0.1", running.ports["imaps"], ssl_context=tls_context(running)) as imap:
        imap.login(DEMO_USER, "wrong")


def test_running_again_keeps_cert_users_and_mail(tmp_path: Path) -> None:
    directory = server_dir("demo-again")
    try:
        first = write_demo(directory, mail_account=mail_user().pw_name)
        marker = first.mail / "kept-mail"
        marker.write_text("x")
        before = (first.cert.read_bytes(), first.key.read_bytes(), first.users.read_text(),
                  first.config.read_text())
        again = write_demo(directory, mail_account=mail_user().pw_name)
        assert again.created == []
        assert (again.cert.read_bytes(), again.key.read_bytes(), again.users.read_text(),
                again.config.read_text()) == before
        assert marker.read_text() == "x"
    finally:
        remove_dir(directory)


def test_command_line_writes_the_setup_and_reports_it() -> None:
    directory = server_dir("demo-cli")
    try:
        proc = subprocess.run([sys.executable, "-m", "cote.demo", str(directory / "d")],
                              capture_output=True, text=True, check=False, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        assert "demo / demo" in proc.stdout
        assert re.search(r"imap 10143, imaps 10993, pop3 10110, pop3s 10995, lmtp 10024, "
                         r"sieve 14190", proc.stdout)
        assert (directory / "d" / "dovecot.conf").exists()
        usage = subprocess.run([sys.executable, "-m", "cote.demo"], capture_output=True,
                               text=True, check=False, cwd=REPO)
        assert usage.returncode == 64 and "usage" in usage.stderr
    finally:
        remove_dir(directory)
