"""A throwaway cote (the real master and its service processes) on free 127.0.0.1 ports.

Usage::

    with CoteServer(mail_location=..., passwd_file=..., protocols="pop3 lmtp") as cote:
        poplib.POP3("127.0.0.1", cote.ports["pop3"])

The config is a Dovecot 2.3 config like an admin's (cote reads Dovecot configs): its own
base_dir, state_dir and log, passwd-file passdb/userdb, listeners on free ports; ``extra_conf``
is appended. ``log_text()`` reads cote's log.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from cote.demo import make_certificate
from tests.support.env import free_port, mail_user, remove_dir, server_dir

REPO = Path(__file__).resolve().parents[2]
COTE = REPO / ".venv/bin/cote"


class CoteServer:
    def __init__(self, *, mail_location: str, passwd_file: str | Path,
                 protocols: str = "imap pop3 lmtp", extra_conf: str = "",
                 auth_mechanisms: str = "plain login", tls: bool = False) -> None:
        self.dir = server_dir("cote")
        self.ports = {"imap": free_port(), "pop3": free_port(), "lmtp": free_port(),
                      "imaps": free_port() if tls else 0, "pop3s": free_port() if tls else 0}
        self.cert = self.dir / "cert.pem"
        ssl_conf = "ssl = no"
        if tls:
            make_certificate(self.cert, self.dir / "key.pem", "localhost")
            ssl_conf = f"ssl = yes\nssl_cert = <{self.cert}\nssl_key = <{self.dir}/key.pem"
        self.protocols = protocols
        self.config_path = self.dir / "dovecot.conf"
        self.log_path = self.dir / "cote.log"
        self.base_dir = self.dir / "run"
        vmail = mail_user()
        self.config_path.write_text(f"""\
base_dir = {self.base_dir}
state_dir = {self.dir}/state
log_path = {self.log_path}
protocols = {protocols}
listen = 127.0.0.1
{ssl_conf}
mail_location = {mail_location}
first_valid_uid = {vmail.pw_uid}
auth_mechanisms = {auth_mechanisms}
passdb {{
  driver = passwd-file
  args = {passwd_file}
}}
userdb {{
  driver = passwd-file
  args = {passwd_file}
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {self.ports['imap']}
  }}
  inet_listener imaps {{
    port = {self.ports['imaps']}
  }}
}}
service pop3-login {{
  chroot =
  inet_listener pop3 {{
    port = {self.ports['pop3']}
  }}
  inet_listener pop3s {{
    port = {self.ports['pop3s']}
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.ports['lmtp']}
  }}
}}
{extra_conf}
""")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> CoteServer:
        """Start and wait until every protocol's port answers. A port that ``free_port``
        found free can be taken by a parallel test before cote binds it: then the ports are
        drawn again and cote started once more (at most three times)."""
        for attempt in range(3):
            try:
                return self._start()
            except RuntimeError as e:
                if "Address already in use" not in str(e) or attempt == 2:
                    raise
                self._new_ports()
        raise AssertionError("unreachable")

    def _new_ports(self) -> None:
        text = self.config_path.read_text()
        for name, old in self.ports.items():
            if old:
                new = free_port()
                text = text.replace(f"port = {old}\n", f"port = {new}\n")
                self.ports[name] = new
        self.config_path.write_text(text)

    def _start(self) -> CoteServer:
        self.process = subprocess.Popen([str(COTE), "-F", "-c", str(self.config_path)],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wanted = [p for name, p in self.ports.items()
                  if p and name.rstrip("s") in self.protocols.split()]
        deadline = time.monotonic() + 20
        for port in wanted:
            while True:
                if self.process.poll() is not None:
                    out = self.process.stdout.read().decode() if self.process.stdout else ""
                    raise RuntimeError(f"cote exited: {out}\n{self.log_text()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"cote did not listen on {port}:\n"
                                           f"{self.log_text()}") from None
                    time.sleep(0.05)
        return self

    def socket_path(self, name: str) -> Path:
        return self.base_dir / name

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def wait_for_log(self, needle: str, timeout: float = 5) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            lines = [x for x in self.log_text().splitlines() if needle in x]
            if lines or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        remove_dir(self.dir)

    def __enter__(self) -> CoteServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()
