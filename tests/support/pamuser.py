"""A throwaway system user and PAM service for PAM/shadow/passwd tests (root only).

Usage::

    with PamUser(password="S3cret-pä") as p:
        p.user, p.service      # e.g. "cp3f9a1c", "cote-test-3f9a1c"
        p.expire()             # chage -E 0: pam_acct_mgmt says the account expired
        p.unexpire()

The service is ``auth required pam_unix.so nodelay`` (no 2 s failure delay), ``account
required pam_unix.so``, ``session required pam_permit.so``. Removed again on exit.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from types import TracebackType


def pam_available() -> bool:
    return os.geteuid() == 0 and Path("/etc/pam.d").is_dir()


class PamUser:
    def __init__(self, password: str) -> None:
        tag = secrets.token_hex(3)
        self.user = f"cp{tag}"
        self.service = f"cote-test-{tag}"
        self.password = password
        self.pam_file = Path("/etc/pam.d") / self.service

    def start(self) -> PamUser:
        subprocess.run(["useradd", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin",
                        self.user], check=True, capture_output=True)
        subprocess.run(["chpasswd"], input=f"{self.user}:{self.password}", text=True,
                       check=True, capture_output=True)
        self.pam_file.write_text("auth required pam_unix.so nodelay\n"
                                 "account required pam_unix.so\n"
                                 "session required pam_permit.so\n")
        return self

    def expire(self) -> None:
        subprocess.run(["chage", "-E", "0", self.user], check=True, capture_output=True)

    def unexpire(self) -> None:
        subprocess.run(["chage", "-E", "-1", self.user], check=True, capture_output=True)

    def cleanup(self) -> None:
        subprocess.run(["userdel", self.user], capture_output=True)
        self.pam_file.unlink(missing_ok=True)

    def __enter__(self) -> PamUser:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()
