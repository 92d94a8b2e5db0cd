"""Line clients for the auth-client and auth-master sockets of cote and Dovecot, and a Pair of
both daemons configured with the same passdb/userdb blocks."""

from __future__ import annotations

import base64
import re
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.cote import CoteServer
from tests.support.dovecot import DOVEADM, DovecotOracle

COTEADM = Path(__file__).resolve().parents[2] / ".venv/bin/coteadm"
MECHS = "plain login"
COMMON = (f"auth_mechanisms = {MECHS}\nauth_verbose = yes\nauth_failure_delay = 0\n"
          "auth_username_chars =\n")  # every name reaches the databases


@dataclass
class Pair:
    dovecot: DovecotOracle
    cote: CoteServer

    def sockets(self, name: str) -> tuple[str, str]:
        return str(self.dovecot.base_dir / name), str(self.cote.socket_path(name))

    def admin(self, *args: str) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
        """``doveadm ARGS`` and ``coteadm ARGS`` on each daemon: (rc, stdout, stderr) each."""
        out = []
        for tool, conf in ((DOVEADM, self.dovecot.config_path),
                           (COTEADM, self.cote.config_path)):
            p = subprocess.run([str(tool), "-c", str(conf), *args], capture_output=True,
                               text=True, timeout=60)
            out.append((p.returncode, p.stdout, p.stderr))
        return out[0], out[1]


def start_pair(auth_conf: str) -> Iterator[Pair]:
    """Both daemons with the fixture's passwd-file first (as CoteServer always has one) and
    ``auth_conf`` (passdb/userdb blocks) after it."""
    dc = DovecotOracle(users={"pwfile": "pwfilepw"}, extra_conf=COMMON + auth_conf,
                       protocols="pop3").start()
    cote = None
    try:
        cote = CoteServer(mail_location=f"maildir:{dc.dir}/mail/%u",
                          passwd_file=dc.dir / "users", protocols="pop3",
                          auth_mechanisms=MECHS, extra_conf=COMMON + auth_conf).start()
        yield Pair(dc, cote)
    finally:
        if cote is not None:
            cote.cleanup()
        dc.cleanup()


class LineClient:
    def __init__(self, path: str, timeout: float = 15) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.path = path
        self.buf = b""

    def send(self, *fields: str) -> None:
        self.sock.sendall("\t".join(fields).encode("utf-8", "surrogateescape") + b"\n")

    def line(self) -> str:
        while b"\n" not in self.buf:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise TimeoutError(f"no answer on {self.path}") from None
            if not data:
                raise EOFError
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode("utf-8", "surrogateescape")

    def until(self, word: str) -> list[str]:
        lines = []
        while True:
            lines.append(self.line())
            if lines[-1].split("\t", 1)[0] == word:
                return lines

    def close(self) -> None:
        self.sock.close()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def client(path: str, cpid: int = 4242) -> tuple[LineClient, str]:
    """An auth-client connection after the handshake; returns it and the daemon's cookie."""
    c = LineClient(path)
    c.send("VERSION", "1", "2")
    c.send("CPID", str(cpid))
    cookie = ""
    for line in c.until("DONE"):
        if line.startswith("COOKIE\t"):
            cookie = line.split("\t")[1]
    return c, cookie


def master(path: str) -> LineClient:
    c = LineClient(path)
    c.send("VERSION", "1", "0")
    assert c.line().startswith("VERSION\t1\t")
    assert c.line().startswith("SPID\t")
    return c


def plain(user: str | bytes, password: str | bytes, service: str = "pop3") -> tuple[str, ...]:
    u = user.encode() if isinstance(user, str) else user
    p = password.encode() if isinstance(password, str) else password
    # no-penalty: Dovecot's auth penalty (up to 15 s per failing client) would slow the tests.
    return ("AUTH", "1", "PLAIN", f"service={service}", "secured", "no-penalty",
            "lip=127.0.0.1", "rip=127.0.0.1", "resp=" + b64(b"\0" + u + b"\0" + p))


def converse(path: str, steps: list[tuple[str, ...]]) -> list[str]:
    c, _ = client(path)
    try:
        out = []
        for step in steps:
            c.send(*step)
            out.append(c.line())
        return out
    finally:
        c.close()


def user_lookup(path: str, user: str) -> str:
    c = master(path)
    try:
        c.send("USER", "7", user, "service=pop3")
        return c.line()
    finally:
        c.close()


def login_then_request(client_path: str, master_path: str, user: str, password: str,
                       cpid: int = 5151) -> tuple[str, str]:
    """PLAIN login, then the mail process's REQUEST for it: (OK/FAIL line, USER line)."""
    c, cookie = client(client_path, cpid=cpid)
    try:
        c.send(*plain(user, password))
        reply = c.line()
        m = master(master_path)
        try:
            m.send("REQUEST", "9", str(cpid), "1", cookie)
            return reply, m.line()
        finally:
            m.close()
    finally:
        c.close()


def list_users(path: str) -> list[str]:
    c = master(path)
    try:
        c.send("LIST", "3", "user=*")
        lines = c.until("DONE")
        return sorted(x.split("\t")[2] for x in lines if x.startswith("LIST\t"))
    finally:
        c.close()


def masked(line: str, base: Path | str) -> str:
    return re.sub(re.escape(str(base)), "<dir>", line)
