"""cote itself on the demo setup: the master accepts the generated config, binds the demo
ports of every service it runs, and stops cleanly. (test_demo.py checks the same config with
Debian's Dovecot.)"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from cote.demo import DEFAULT_PORTS, Demo, write_demo
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


def test_master_stops_cleanly(cote_demo: tuple[Demo, subprocess.Popen[bytes]]) -> None:
    demo, proc = cote_demo
    err = stop_cote(demo.config, proc)
    assert err == "", err + demo.log.read_text()
    for port in demo.ports.values():
        assert not port_is_bound(port)
    assert "shutting down" in demo.log.read_text()
