"""Helpers for the shipped-config tests: run doveconf/coteconf, start Dovecot on a config."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.dovecot import DOVECONF, DOVECOT, dovecot_available

REPO = Path(__file__).resolve().parents[2]
COTECONF = [sys.executable, "-m", "cote.cli.conf"]
COTE = [sys.executable, "-m", "cote.cli.master"]
COTEADM = [sys.executable, "-m", "cote.cli.adm"]


def require_dovecot() -> None:
    if not dovecot_available():
        pytest.fail("Debian's dovecot-core is not installed: run scripts/test (it installs it)")


def run_doveconf(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOVECONF, "-c", str(config), *args], capture_output=True, text=True,
                          check=False)


def run_coteconf(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COTECONF, "-c", str(config), *args], capture_output=True, text=True,
                          check=False, cwd=REPO)


def settings_lines(output: str) -> list[str]:
    """``-n`` output without the comment header (version, OS and host lines differ)."""
    return [line for line in output.splitlines() if not line.startswith("#")]


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            text = log.read_text() if log.exists() else ""
            raise RuntimeError(f"server exited: {err}\n{text}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after 15 s")


def start_dovecot(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([DOVECOT, "-F", "-c", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc, log)
    except RuntimeError:
        stop(proc)
        raise
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def copy_tree(dest: Path) -> Path:
    """A copy of the repository's etc/ in ``dest``; returns its dovecot.conf."""
    shutil.copytree(REPO / "etc", dest, dirs_exist_ok=True)
    return dest / "dovecot.conf"


def start_cote(config: Path, base_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    """``cote -F -c config``, returned once its control socket exists."""
    proc = subprocess.Popen([*COTE, "-F", "-c", str(config)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not (base_dir / "master").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            err = proc.stderr.read().decode() if proc.stderr else ""
            text = log.read_text() if log.exists() else ""
            raise RuntimeError(f"cote did not start: {err}\n{text}")
        time.sleep(0.05)
    return proc


def stop_cote(config: Path, proc: subprocess.Popen[bytes]) -> str:
    """``cote stop``; returns its error output ("" when the master stopped with status 0).

    ``cote stop`` waits for the pid to go away, so the master is reaped meanwhile (its parent
    here is the test, not init)."""
    stopper = subprocess.Popen([*COTE, "-c", str(config), "stop"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        if stopper.poll() not in (None, 0):
            break  # the stop command failed: no point in waiting for the master
        time.sleep(0.05)
    _, err = stopper.communicate(timeout=30)
    status = proc.poll()
    if stopper.returncode or status != 0:
        return f"stop: exit {stopper.returncode}, master: exit {status}: {err}"
    return ""


def wait_for_log(log: Path, text: str, timeout: float = 10) -> str:
    """The log's content once it contains ``text`` (the log service writes asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        content = log.read_text() if log.exists() else ""
        if text in content or time.monotonic() > deadline:
            return content
        time.sleep(0.05)


def port_is_bound(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port, found by trying to bind it: connecting
    would make the master start a login process, which this test does not exercise."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR: connections in TIME_WAIT do not count, only a listening socket does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def service_status(config: Path) -> dict[str, dict[str, str]]:
    """``coteadm service status`` as {service: {column: value}}."""
    out = subprocess.run([*COTEADM, "-c", str(config), "service", "status"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    header = out[0].split()
    return {row.split()[0]: dict(zip(header, row.split(), strict=True)) for row in out[1:]}
