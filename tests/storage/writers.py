"""Forked writer processes for the crash and concurrency tests, and the store checks."""

from __future__ import annotations

import os
import random
import re
import time
import traceback
from pathlib import Path

from cote.storage.maildir import uidlist as ul
from cote.storage.maildir.list import MaildirList
from cote.storage.maildir.mailbox import MaildirMailbox

_TOKEN = re.compile(rb"^Subject: (tok-\S+)", re.M)


def _log(fd: int, line: str) -> None:
    os.write(fd, line.encode() + b"\n")


def _token_of(box: MaildirMailbox, uid: int) -> str | None:
    try:
        m = _TOKEN.search(box.read_message(uid, 0, 200))
    except Exception:
        return None
    return m.group(1).decode() if m else None


def run_writer(root: Path, log_path: Path, seed: int, *, seconds: float | None = None,
               rewrite_every_expunge: bool = False, expunge_share: float = 0.25,
               keywords: int = 40) -> None:
    """The body of a forked child: appends, flag changes and expunges until killed (or for
    ``seconds``). Logs ``A <token> <uid>`` after a completed append and ``X <token>`` before
    it tries to expunge a message. Uses ``keywords`` distinct keywords (more than 26 cannot
    all have a filename letter). Never returns: the child exits with os._exit."""
    code = 0
    try:
        rnd = random.Random(seed)
        if rewrite_every_expunge:
            MaildirMailbox.rewrite_min_dead = 1
        log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        ml = MaildirList(f"maildir:{root}")
        box = ml.open("INBOX")
        deadline = None if seconds is None else time.monotonic() + seconds
        n = 0
        while deadline is None or time.monotonic() < deadline:
            op = rnd.random()
            if op < 1 - expunge_share - 0.2 or len(box) < 3:
                with box.begin_append() as tx:
                    tokens = []
                    for _ in range(rnd.randint(1, 3)):
                        token = f"tok-{seed}-{n}"
                        n += 1
                        flags = rnd.choice([[], ["\\Seen"], ["\\Flagged", f"kw{rnd.randrange(keywords)}"]])
                        tx.add(f"Subject: {token}\n\nbody {token}\n".encode(), flags)
                        tokens.append(token)
                    uids = tx.commit()
                for token, uid in zip(tokens, uids, strict=True):
                    _log(log, f"A {token} {uid}")
            elif op < 1 - expunge_share:
                box.sync()
                if len(box):
                    picks = rnd.sample(list(box.uids), min(len(box), rnd.randint(1, 4)))
                    box.store(picks, rnd.choice("+-="),
                              rnd.choice([["\\Seen"], ["\\Answered", "later"], [f"kw{n % keywords}"]]))
            else:
                box.sync()
                mine = [u for u in box.uids if (_token_of(box, u) or "").startswith(f"tok-{seed}-")]
                if mine:
                    picks = rnd.sample(mine, min(len(mine), rnd.randint(1, 2)))
                    for uid in picks:
                        token = _token_of(box, uid)
                        if token:
                            _log(log, f"X {token}")
                    box.store(picks, "+", ["\\Deleted"])
                    box.expunge(picks)
        ml.close()
    except BaseException:
        traceback.print_exc()
        code = 1
    os._exit(code)


def fork_writer(root: Path, log_path: Path, seed: int, *, user: tuple[int, int] | None = None,
                **kw: object) -> int:
    """Fork a writer (as ``(uid, gid)`` when given: the user Dovecot runs as)."""
    pid = os.fork()
    if pid == 0:
        if user is not None:
            os.setgid(user[1])
            os.setuid(user[0])
            os.umask(0o077)
        run_writer(root, log_path, seed, **kw)  # type: ignore[arg-type]
    return pid


def read_log(path: Path) -> tuple[dict[str, int], set[str]]:
    appended: dict[str, int] = {}
    expunging: set[str] = set()
    if not path.exists():
        return appended, expunging
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "A":
            appended[parts[1]] = int(parts[2])
        elif len(parts) == 2 and parts[0] == "X":
            expunging.add(parts[1])
    return appended, expunging


def tokens_on_disk(root: Path) -> dict[str, list[str]]:
    """token -> the file names holding it (more than one would be a doubled message)."""
    out: dict[str, list[str]] = {}
    for sub in ("new", "cur"):
        for entry in os.scandir(root / sub):
            with open(entry.path, "rb") as f:
                m = _TOKEN.search(f.read(200))
            if m:
                out.setdefault(m.group(1).decode(), []).append(entry.name)
    return out


def uidlist_records(root: Path) -> tuple[int, dict[int, str]]:
    parsed, _ = ul.read(str(root / ul.NAME))
    assert parsed is not None
    return parsed.uidvalidity, dict(zip(parsed.uids, parsed.bases, strict=True))
