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
