"""Fixtures for coteadm: a Dovecot oracle and a cote on the same passwd-file and store."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cote import CoteServer
from tests.support.dovecot import DOVEADM, DovecotOracle, dovecot_available

REPO = Path(__file__).resolve().parents[2]
COTEADM = REPO / ".venv/bin/coteadm"


@dataclass
class Result:
    rc: int
    out: str
    err: str


def _norm(text: str) -> str:
    text = re.sub(r"/tmp/cote-tests/[a-z]+-[a-z0-9_]+", "DIR", text)
    return re.sub(r"<\d+>", "<PID>", text)


@dataclass
class Pair:
    dovecot: DovecotOracle
    cote: CoteServer

    def doveadm(self, *args: str, stdin: str | None = None,
                env: dict[str, str] | None = None) -> Result:
        p = subprocess.run([DOVEADM, "-c", str(self.dovecot.config_path), *args],
                           capture_output=True, text=True, input=stdin, timeout=60, env=env)
        return Result(p.returncode, _norm(p.stdout), _norm(p.stderr))

    def coteadm(self, *args: str, stdin: str | None = None,
                env: dict[str, str] | None = None) -> Result:
        p = subprocess.run([str(COTEADM), "-c", str(self.cote.config_path), *args],
                           capture_output=True, text=True, input=stdin, timeout=60, env=env)
        return Result(p.returncode, _norm(p.stdout), _norm(p.stderr))


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    if not dovecot_available():
        pytest.fail("Debian's dovecot-core is not installed: run scripts/test")
    dc = DovecotOracle(users={"user1": "pass1", "user2": "pass2"},
                       passwd_extra={"user2": "userdb_quota_rule=*:storage=1G"})
    dc.start()
    cote = CoteServer(mail_location=dc.mail_location, passwd_file=dc.dir / "users")
    try:
        cote.start()
    except Exception:
        dc.cleanup()
        raise
    yield Pair(dc, cote)
    cote.cleanup()
    dc.cleanup()
