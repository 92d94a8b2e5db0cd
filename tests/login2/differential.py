"""Helpers for running one client script against Dovecot and cote and comparing the results."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Server:
    name: str
    pop3: int
    imap: int
    log: Callable[[], str]


def session(port: int, header: bytes, lines: list[bytes], source: str = "127.0.0.1") -> bytes:
    """Connect (from ``source``), send ``header``, then each line; all the answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=5,
                                  source_address=(source, 0)) as s:
        out = b""
        try:
            if header:
                s.sendall(header)
            out = s.recv(4096)
            for line in lines:
                s.sendall(line)
                time.sleep(0.05)
                out += read_answer(s)
        except ConnectionError:
            pass
    return out


def read_answer(s: socket.socket) -> bytes:
    """Up to a line end (and whatever came with it)."""
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def log_lines(server: Server, mark: int) -> list[str]:
    """The login/auth lines logged after ``mark`` characters, without time/pid/random ids."""
    lines = []
    for line in server.log()[mark:].splitlines():
        if not re.search(r"-login: |auth: ", line) or "Connection closed (" in line:
            continue
        line = re.sub(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d ", "", line)
        line = re.sub(r"<[A-Za-z0-9+/]{16}>", "<>", line)  # generated session ids
        line = re.sub(r"mpid=\d+", "mpid=N", line)
        line = re.sub(r"in \d+ secs", "in N secs", line)
        # Dovecot keeps an empty user=<> element; cote/log.py drops it (reported, not ours).
        line = line.replace("user=<>, ", "")
        lines.append(line)
    return sorted(lines)


def post_login_masked(answer: bytes) -> bytes:
    """The mail process's post-login capabilities and timings are another part's business."""
    answer = re.sub(rb"OK \[CAPABILITY [^\]]*\] Logged in", b"OK [CAPABILITY] Logged in", answer)
    return re.sub(rb" \(\d+\.\d+ \+ \d+\.\d+(?: \+ \d+\.\d+)? secs\)", b"", answer)


def both(servers: tuple[Server, Server], proto: str, header: bytes, lines: list[bytes],
         source: str = "127.0.0.1", settle: float = 0.5) -> tuple[bytes, list[str]]:
    """Run the script on Dovecot, then cote; assert same answers and log lines; return ours."""
    results = []
    for server in servers:
        mark = len(server.log())
        answer = session(server.pop3 if proto == "pop3" else server.imap, header, lines, source)
        time.sleep(settle)
        results.append((post_login_masked(answer), log_lines(server, mark)))
    (theirs, their_log), (ours, our_log) = results
    assert ours == theirs, (ours, theirs)
    assert our_log == their_log, (our_log, their_log)
    return ours, our_log


def backend_login_line(log_path: Path, protocol: str, user: str) -> str:
    """The backend Dovecot's last ``Login:`` line for ``user`` (waits up to 10 s for it)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [x for x in log_path.read_text().splitlines()
                 if f"{protocol}-login: Info: Login: user=<{user}>" in x]
        if lines:
            return lines[-1]
        time.sleep(0.05)
    raise AssertionError(f"no backend login for {user}")
