"""A throwaway Debian Dovecot on free 127.0.0.1 ports: the oracle for differential tests.

Usage::

    with DovecotOracle(users={"user1": "pass1"}) as dc:
        imaplib.IMAP4("127.0.0.1", dc.ports["imap"]).login("user1", "pass1")

Each instance has its own base_dir, state_dir, instance name, log and passwd-file; mail is
stored as ``maildir:<dir>/mail/%u`` (or ``mail_location=``) owned by the test mail user.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from tests.support.env import chown_tree, free_port, mail_user, remove_dir, server_dir

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
DOVECONF = shutil.which("doveconf") or "/usr/bin/doveconf"


def dovecot_available() -> bool:
    return os.path.exists(DOVECOT) and os.path.exists(DOVECONF)


class DovecotOracle:
    """Start/stop one Dovecot instance. ``extra_conf`` is appended to the generated config."""

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        *,
        mail_location: str | None = None,
        protocols: str = "imap pop3 lmtp",
        extra_conf: str = "",
        passwd_extra: Mapping[str, str] | None = None,
        stored_passwords: Mapping[str, str] | None = None,
    ) -> None:
        self.dir = server_dir("dovecot")
        self.users = dict(users or {"user1": "pass1"})
        self.passwd_extra = dict(passwd_extra or {})
        # Stored forms (e.g. a SHA512-CRYPT hash) for users that should not be {PLAIN}.
        self.stored_passwords = dict(stored_passwords or {})
        self.mail_location = mail_location or f"maildir:{self.dir}/mail/%u"
        self.protocols = protocols
        self.extra_conf = extra_conf
        self.ports = {"imap": free_port(), "pop3": free_port(), "lmtp": free_port()}
        self.config_path = self.dir / "dovecot.conf"
        self.log_path = self.dir / "dovecot.log"
        self.base_dir = self.dir / "run"
        self.process: subprocess.Popen[bytes] | None = None

    # -- config -----------------------------------------------------------------------
    def passwd_line(self, user: str, password: str) -> str:
        vmail = mail_user()
        extra = self.passwd_extra.get(user, "")
        home = self.dir / "home" / user
        stored = self.stored_passwords.get(user, f"{{PLAIN}}{password}")
        return f"{user}:{stored}:{vmail.pw_uid}:{vmail.pw_gid}::{home}::{extra}"

    def write_config(self) -> None:
        vmail = mail_user()
        (self.dir / "users").write_text(
            "".join(self.passwd_line(u, p) + "\n" for u, p in self.users.items())
        )
        for sub in ("mail", "home", "state"):
            (self.dir / sub).mkdir(exist_ok=True)
        chown_tree(self.dir / "mail", vmail.pw_uid, vmail.pw_gid)
        chown_tree(self.dir / "home", vmail.pw_uid, vmail.pw_gid)
        self.config_path.write_text(f"""\
base_dir = {self.base_dir}
state_dir = {self.dir}/state
instance_name = oracle-{self.dir.name}
log_path = {self.log_path}
protocols = {self.protocols}
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = {self.mail_location}
first_valid_uid = {vmail.pw_uid}
last_valid_uid = {vmail.pw_uid}
mail_privileged_group =
passdb {{
  driver = passwd-file
  args = {self.dir}/users
}}
userdb {{
  driver = passwd-file
  args = {self.dir}/users
}}
service imap-login {{
  inet_listener imap {{
    port = {self.ports['imap']}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {self.ports['pop3']}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.ports['lmtp']}
  }}
}}
{self.extra_conf}
""")

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> DovecotOracle:
        self.write_config()
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(self.config_path)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        port = self.ports["imap"] if "imap" in self.protocols else self.ports["pop3"]
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                log = self.log_path.read_text() if self.log_path.exists() else ""
                raise RuntimeError(f"dovecot exited: {err}\n{log}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("dovecot did not start listening in 15 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        remove_dir(self.dir)

    def doveadm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DOVEADM, "-c", str(self.config_path), *args],
                              capture_output=True, text=True, check=check)

    def user_maildir(self, user: str) -> Path:
        return self.dir / "mail" / user

    def __enter__(self) -> DovecotOracle:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()
