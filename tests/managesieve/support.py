"""A Dovecot (Pigeonhole) and a cote on the same users and homes, and a ManageSieve client.

Both servers read one passwd-file (so ``~/sieve`` is the same directory for both), use one
self-signed certificate, and run the same ManageSieve settings: a session replayed on each
must get the same bytes back, and each must read the scripts the other stored.
"""

from __future__ import annotations

import base64
import re
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle
from tests.support.env import free_port

QUOTA = "sieve_quota_max_scripts = 4\n  sieve_quota_max_storage = 2k\n  " \
        "sieve_max_script_size = 1k"


def sieve_conf(port: int, cert: Path, key: Path, extra_plugin: str = QUOTA) -> str:
    return f"""
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
service managesieve-login {{
  chroot =
  inet_listener sieve {{
    port = {port}
  }}
}}
plugin {{
  sieve = file:~/sieve;active=~/.dovecot.sieve
  {extra_plugin}
}}
"""


class Pair:
    """``dovecot`` and ``cote``, started; ``ports[name]`` is each one's ManageSieve port."""

    def __init__(self, dovecot: DovecotOracle, cote: CoteServer, ports: dict[str, int]) -> None:
        self.dovecot = dovecot
        self.cote = cote
        self.ports = ports

    def home(self, user: str) -> Path:
        return self.dovecot.dir / "home" / user

    def reset_home(self, user: str) -> None:
        """Remove the user's scripts (as root: the next session recreates them as the user)."""
        home = self.home(user)
        shutil.rmtree(home / "sieve", ignore_errors=True)
        active = home / ".dovecot.sieve"
        if active.is_symlink() or active.exists():
            active.unlink()


@contextmanager
def server_pair(users: dict[str, str] | None = None, extra_plugin: str = QUOTA,
                dovecot_extra: str = "", proxied: dict[str, str] | None = None
                ) -> Iterator[Pair]:
    """``dovecot_extra``: config for Dovecot only (e.g. its LMTP running Sieve scripts).
    ``proxied``: user -> passdb extra fields, where ``{backend}`` is Dovecot's ManageSieve
    port (a user to log in through cote's proxy with Dovecot as the backend)."""
    users = users or {"user1": "pass1", "user2": "pass2"}
    ports = {"dovecot": free_port(), "cote": free_port()}
    extra = {user: fields.format(backend=ports["dovecot"])
             for user, fields in (proxied or {}).items()}
    users = {**users, **dict.fromkeys(extra, "proxypass")}
    dovecot = DovecotOracle(users=users, protocols="imap pop3 lmtp sieve", passwd_extra=extra)
    cote = CoteServer(mail_location=f"maildir:{dovecot.dir}/mail/%u",
                      passwd_file=dovecot.dir / "users", protocols="imap pop3 sieve", tls=True)
    key = cote.cert.parent / "key.pem"
    dovecot.extra_conf = sieve_conf(ports["dovecot"], cote.cert, key, extra_plugin) + \
        dovecot_extra
    with cote.config_path.open("a") as f:
        f.write(sieve_conf(ports["cote"], cote.cert, key, extra_plugin))
    try:
        dovecot.start()
        cote.start()
        wait_listening(ports["cote"])
        wait_listening(ports["dovecot"])
        yield Pair(dovecot, cote, ports)
    finally:
        cote.cleanup()
        dovecot.cleanup()


def wait_listening(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


_LITERAL_END = re.compile(rb"\{(\d+)\+?\}\r\n$")
_DONE = re.compile(rb"^(OK|NO|BYE)\b")


class SieveClient:
    """Blocking ManageSieve client that reads whole responses (literals included)."""

    def __init__(self, port: int, *, source: str = "127.0.0.1", timeout: float = 15) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
        self.buf = b""
        self.greeting = self.response()

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("server closed the connection")
        self.buf += data

    def line(self) -> bytes:
        """One line with its CRLF and, when it ends in a literal, the literal's octets."""
        while b"\n" not in self.buf:
            self._fill()
        end = self.buf.index(b"\n") + 1
        line, self.buf = self.buf[:end], self.buf[end:]
        m = _LITERAL_END.search(line)
        if m:
            size = int(m.group(1))
            while len(self.buf) < size:
                self._fill()
            line, self.buf = line + self.buf[:size], self.buf[size:]
            line += self.line()
        return line

    def response(self) -> bytes:
        """Lines up to and including the OK/NO/BYE that ends a response."""
        out = b""
        while True:
            line = self.line()
            out += line
            if _DONE.match(line):
                return out

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, data: bytes) -> bytes:
        self.send(data)
        return self.response()

    def starttls(self) -> bytes:
        reply = self.command(b"STARTTLS\r\n")
        assert reply.startswith(b"OK"), reply
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock)
        return reply + self.response()

    def closed(self) -> bool:
        """True when the server closed the connection (after BYE or LOGOUT)."""
        try:
            self.sock.settimeout(5)
            return self.buf == b"" and self.sock.recv(1) == b""
        except OSError:
            return True

    def close(self) -> None:
        self.sock.close()


def plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()
