"""cote itself on the demo setup: the master accepts the generated config, binds the demo
ports of every service it runs, serves the demo user over IMAP, IMAPS, POP3S and LMTP, and
stops cleanly. (test_demo.py checks the same config with Debian's Dovecot.)"""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import ssl
import subprocess
from collections.abc import Iterator

import pytest

from cote.demo import DEFAULT_PORTS, DEMO_PASSWORD, DEMO_USER, Demo, write_demo
from tests.etc.conftest import (
    port_is_bound,
    service_status,
    start_cote,
    stop,
    stop_cote,
    wait_for_log,
)
from tests.support.env import free_port, mail_user, remove_dir, server_dir

# demo listener -> the service that owns it
LISTENERS = {"imap": "imap-login", "imaps": "imap-login", "pop3": "pop3-login",
             "pop3s": "pop3-login", "lmtp": "lmtp", "sieve": "managesieve-login"}


@pytest.fixture(scope="module")
def cote_demo() -> Iterator[tuple[Demo, subprocess.Popen[bytes]]]:
    directory = server_dir("demo-cote")
    demo = write_demo(directory, ports={name: free_port() for name in DEFAULT_PORTS},
                      mail_account=mail_user().pw_name)
    proc = start_cote(demo.config, demo.directory / "run", demo.log)
    try:
        yield demo, proc
    finally:
        stop(proc)
        remove_dir(directory)


def test_master_starts_on_the_demo_config_without_errors(
        cote_demo: tuple[Demo, subprocess.Popen[bytes]]) -> None:
    demo, proc = cote_demo
    assert proc.poll() is None
    log = wait_for_log(demo.log, "starting up")
    assert "starting up" in log
    assert " Error: " not in log and " Fatal: " not in log, log


def test_every_running_service_listens_on_its_demo_port(
        cote_demo: tuple[Demo, subprocess.Popen[bytes]]) -> None:
    demo, _ = cote_demo
    status = service_status(demo.config)
    assert "log" in status and "anvil" in status
    checked = 0
    for listener, service in LISTENERS.items():
        if service not in status:
            assert f"service {service}: not implemented yet" in demo.log.read_text()
            continue
        assert port_is_bound(demo.ports[listener]), (listener, status[service])
        checked += 1
    assert checked >= 1  # at least one mail service runs on the demo ports


def test_demo_user_reads_delivered_mail_over_imap_and_pop3s(
        cote_demo: tuple[Demo, subprocess.Popen[bytes]]) -> None:
    demo, _ = cote_demo
    ctx = ssl.create_default_context(cafile=str(demo.cert))
    with smtplib.LMTP("127.0.0.1", demo.ports["lmtp"], local_hostname="localhost",
                      timeout=10) as lmtp:
        assert lmtp.sendmail("sender@example.org", [DEMO_USER],
                             b"Subject: via cote\r\n\r\ndelivered by cote's LMTP\r\n") == {}
    with imaplib.IMAP4("127.0.0.1", demo.ports["imap"], timeout=10) as imap:
        imap.starttls(ctx)
        assert imap.login(DEMO_USER, DEMO_PASSWORD)[0] == "OK"
        typ, data = imap.select("INBOX")
        assert typ == "OK" and int(data[0] or b"0") >= 1
        typ, found = imap.search(None, "SUBJECT", '"via cote"')
        assert typ == "OK" and found[0]
        typ, body = imap.fetch(found[0].split()[-1], "(BODY[TEXT])")
        assert typ == "OK" and b"delivered by cote's LMTP" in body[0][1]
    with imaplib.IMAP4_SSL("127.0.0.1", demo.ports["imaps"], ssl_context=ctx,
                           timeout=10) as imap:
        assert imap.login(DEMO_USER, DEMO_PASSWORD)[0] == "OK"
    pop = poplib.POP3_SSL("127.0.0.1", demo.ports["pop3s"], context=ctx, timeout=10)
    try:
        pop.user(DEMO_USER)
        pop.pass_(DEMO_PASSWORD)
        assert pop.stat()[0] >= 1
    finally:
        pop.quit()
    assert any(b"delivered by cote's LMTP" in p.read_bytes()
               for p in (demo.mail / DEMO_USER).glob("*/*") if p.is_file())
    log = demo.log.read_text()
    assert " Error: " not in log and " Fatal: " not in log, log


def test_master_stops_cleanly(cote_demo: tuple[Demo, subprocess.Popen[bytes]]) -> None:
    demo, proc = cote_demo
    err = stop_cote(demo.config, proc)
    assert err == "", err + demo.log.read_text()
    for port in demo.ports.values():
        assert not port_is_bound(port)
    assert "shutting down" in demo.log.read_text()
