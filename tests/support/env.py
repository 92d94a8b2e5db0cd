"""Free ports, world-traversable temp dirs and the unprivileged mail user used by fixtures.

pytest's own tmp_path lives under a 0700 directory, which processes that drop privileges
(Dovecot's and cote's mail and login processes) cannot enter; servers get dirs from here.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

TEST_ROOT = Path("/tmp/cote-tests")
MAIL_USER = "cotevmail"


_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago and that this process has not handed out before.

    The kernel may pick the same port for two binds in a row once the first socket is closed,
    and a fixture asks for several ports before its server binds any of them: a port seen
    before is skipped, so one server never gets two listeners on the same port."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def server_dir(prefix: str) -> Path:
    """A fresh 0755 directory that unprivileged server processes can traverse."""
    TEST_ROOT.mkdir(mode=0o755, exist_ok=True)
    os.chmod(TEST_ROOT, 0o755)
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=TEST_ROOT))
    path.chmod(0o755)
    return path


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def mail_user() -> pwd.struct_passwd:
    """The unprivileged system user that owns test mail stores (created on first use)."""
    try:
        return pwd.getpwnam(MAIL_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", MAIL_USER],
            check=False, capture_output=True,
        )
        return pwd.getpwnam(MAIL_USER)


def chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
