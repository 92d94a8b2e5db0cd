"""A real cote master on free ports, started as a subprocess (``cote -F -c <conf>``).

Test programs for ``executable = /path/prog`` services are written here too: they follow the
process contract for exec'd programs (listeners from fd 3, status records on COTE_STATUS_FD,
SIGQUIT = stop accepting and finish clients).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.env import free_port, remove_dir, server_dir

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python")

# An exec'd service program: greets each client with its uid, echoes one line, then closes.
ECHO_PROG = r'''#!/usr/bin/python3
import os, signal, socket, struct, sys
status_fd = int(os.environ["COTE_STATUS_FD"])
limit = int(os.environ["COTE_CLIENT_LIMIT"])
generation = int(os.environ["COTE_GENERATION"])
lst = socket.socket(fileno=3)
lst.setblocking(True)
def report(n):
    os.write(status_fd, struct.pack("=iII", os.getpid(), generation, n))
state = {"serving": False, "quit": False}
def on_quit(*_):
    if not state["serving"]:
        os._exit(0)
    state["quit"] = True
signal.signal(signal.SIGQUIT, on_quit)
def on_all_full(*_):
    sys.stderr.write("all processes full\n")
    sys.stderr.flush()
signal.signal(signal.SIGUSR2, on_all_full)
sys.stderr.write(f"echo started uid={os.getuid()} listeners={os.environ['LISTEN_FDNAMES']}\n")
sys.stderr.flush()
report(limit)
while True:
    c, _ = lst.accept()
    state["serving"] = True
    report(0)
    groups = ",".join(str(g) for g in sorted(os.getgroups()))
    c.sendall(f"hello uid={os.getuid()} pid={os.getpid()} gid={os.getgid()} "
              f"groups={groups}\n".encode())
    data = c.recv(100)
    c.sendall(b"echo " + data)
    c.close()
    state["serving"] = False
    if state["quit"]:
        os._exit(0)
    report(limit)
'''

# Allocates past any sane vsz_limit when a client connects; exit 83 is the OOM convention.
VSZ_PROG = r'''#!/usr/bin/python3
import os, socket, sys
lst = socket.socket(fileno=3)
c, _ = lst.accept()
try:
    hog = bytearray(512 * 1024 * 1024)
except MemoryError:
    sys.stderr.write("vsz test: MemoryError\n")
    sys.stderr.flush()
    os._exit(83)
c.sendall(b"allocated\n")
'''


def write_prog(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    path.chmod(0o755)
    return path


class MasterServer:
    """One cote master with its own base_dir, log file and config."""

    def __init__(self, dir_: Path, conf: str, *, user: str | None = None) -> None:
        self.dir = dir_
        self.conf_path = dir_ / "cote.conf"
        self.log_path = dir_ / "cote.log"
        self.base_dir = dir_ / "run"
        self.user = user
        self.conf_path.write_text(conf)
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self, *args: str) -> list[str]:
        cmd = [PYTHON, "-m", "cote.cli.master", *args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return cmd

    def start(self, env: dict[str, str] | None = None) -> MasterServer:
        self.proc = subprocess.Popen(self.command("-F", "-c", str(self.conf_path)),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env={**os.environ, **(env or {})}, cwd=str(ROOT))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"cote exited {self.proc.returncode}: {err}\n{self.log()}")
            try:
                if self.control("ping")["ok"]:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"cote did not come up:\n{self.log()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid if not self.user else int(
            (self.base_dir / "master.pid").read_text())

    def control(self, cmd: str) -> dict:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(20)
        try:
            s.connect(str(self.base_dir / "master"))
            s.sendall(json.dumps({"cmd": cmd}).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            return json.loads(buf)
        finally:
            s.close()

    def processes(self, service: str | None = None) -> list[dict]:
        procs = self.control("process-status")["processes"]
        return [p for p in procs if service is None or p["service"] == service]

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def wait_log(self, pattern: str, timeout: float = 10.0, start: int = 0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.compile(pattern, re.M).search(self.log(), start)
            if m:
                return m
            time.sleep(0.05)
        raise AssertionError(f"log never matched {pattern!r}:\n{self.log()}")

    def wait_for(self, predicate, timeout: float = 10.0, what: str = "condition"):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log()}")

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return s


def recv_line(s: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(1)
        if not chunk:
            break
        buf += chunk
    return buf


def proc_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


def proc_title(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive for our purposes
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    d = server_dir("master")
    yield d
    remove_dir(d)


__all__ = ["ECHO_PROG", "PYTHON", "VSZ_PROG", "MasterServer", "alive", "connect", "free_port",
           "proc_title", "proc_uid", "recv_line", "sys", "write_prog"]
