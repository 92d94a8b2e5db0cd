"""cote's SQLite index (and its -wal/-shm) take the mail root's mode and group, as Dovecot's
``dovecot.index*`` do, whatever the process umask (run as root: the group differs)."""

from __future__ import annotations

import grp
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cote.storage import open_storage
from cote.storage.index import NAME
from tests.support.env import remove_dir, server_dir


@pytest.fixture
def base() -> Iterator[Path]:
    d = server_dir("index-mode")
    try:
        yield d
    finally:
        remove_dir(d)


def other_group() -> int:
    for name in ("mail", "users", "staff", "nogroup"):
        try:
            gid = grp.getgrnam(name).gr_gid
        except KeyError:
            continue
        if gid != os.getegid():
            return gid
    pytest.skip("no second group")


@pytest.mark.parametrize(("mode", "expect_file"), [(0o700, 0o600), (0o770, 0o660),
                                                   (0o2770, 0o660)])
def test_index_files_take_the_roots_mode_and_group(base: Path, mode: int, expect_file: int
                                                   ) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the root another group")
    root = base / "Maildir"
    root.mkdir()
    gid = other_group()
    os.chown(root, 0, gid)
    os.chmod(root, mode)
    old = os.umask(0o077)
    try:
        # a setgid root passes its group on by itself: keep that index inside the root
        index = root if mode & 0o2000 else base / "index" / "sub"
        mailboxes = open_storage(f"maildir:{root}:INDEX={index}")
        box = mailboxes.open("INBOX")
        box.append(b"Subject: x\n\nbody\n")
        box.sync()
        names = [NAME, NAME + "-wal", NAME + "-shm"]
        stats = {n: os.stat(index / n) for n in names}
        index_dir = os.stat(index)
        mailboxes.close()
    finally:
        os.umask(old)
    for n, st in stats.items():
        assert (n, stat.S_IMODE(st.st_mode)) == (n, expect_file)
        want_gid = gid if mode & 0o070 else 0
        assert (n, st.st_gid) == (n, want_gid)
    assert stat.S_IMODE(index_dir.st_mode) == mode
