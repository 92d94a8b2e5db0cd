"""cote itself on the demo setup: the master accepts the generated config, binds the demo
ports of every service it runs, and stops cleanly. (test_demo.py checks the same config with
Debian's Dovecot.)"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from cote.demo import DEFAULT_PORTS, Demo, write_demo
from tests.etc.conftest import REPO, stop
from tests.support.env import free_port, mail_user, remove_dir, server_dir

COTE = [sys.executable, "-m", "cote.cli.master"]
COTEADM = [sys.executable, "-m", "cote.cli.adm"]
# demo listener -> the service that owns it
LISTENERS = {"imap": "imap-login", "imaps": "imap-login", "pop3": "pop3-login",
             "pop3s": "pop3-login", "lmtp": "lmtp", "sieve": "managesieve-login"}


@pytest.fixture(scope="module")
def cote_demo() -> Iterator[tuple[Demo, subprocess.Popen[bytes]]]:
    directory = server_dir("demo-cote")
    demo = write_demo(directory, ports={name: free_port() for name in DEFAULT_PORTS},
                      mail_account=mail_user().pw_name)
    proc = subprocess.Popen([*COTE, "-F", "-c", str(demo.config)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not (demo.directory / "run" / "master").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                log = demo.log.read_text() if demo.log.exists() else ""
                raise RuntimeError(f"cote did not start: {err}\n{log}")
            time.sleep(0.05)
        yield demo, proc
    finally:
        stop(proc)
        remove_dir(directory)


def port_is_bound(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port, found by trying to bind it: connecting
    would make the master start a login process, which this test does not exercise."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def service_status(demo: Demo) -> dict[str, dict[str, str]]:
    out = subprocess.run([*COTEADM, "-c", str(demo.config), "service", "status"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    header = out[0].split()
    return {row.split()[0]: dict(zip(header, row.split(), strict=True)) for row in out[1:]}


def test_master_starts_on_the_demo_config_without_errors(
        cote_demo: tuple[Demo, subprocess.Popen[bytes]]) -> None:
    demo, proc = cote_demo
    assert proc.poll() is None
    log = demo.log.read_text()
    assert "starting up" in log
    assert " Error: " not in log and " Fatal: " not in log, log


def test_every_running_service_listens_on_its_demo_port(
        cote_demo: tuple[Demo, subprocess.Popen[bytes]]) -> None:
    demo, _ = cote_demo
    status = service_status(demo)
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
    # `cote stop` waits for the pid to go away, so the master must be reaped meanwhile
    # (its parent here is this test, not init).
    stopper = subprocess.Popen([*COTE, "-c", str(demo.config), "stop"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.wait(15) == 0
    _, err = stopper.communicate(timeout=30)
    assert stopper.returncode == 0, err + demo.log.read_text()
    for port in demo.ports.values():
        assert not port_is_bound(port)
    assert "shutting down" in demo.log.read_text()
