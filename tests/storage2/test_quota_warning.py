"""Quota warnings: Dovecot's script request on a real UNIX socket, through cote's master's
script service, and the same crossings as Dovecot's quota plugin reports."""

from __future__ import annotations

import imaplib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cote.storage import MaildirList
from cote.storage.quota import Quota, send_warning
from tests.master.conftest import MasterServer
from tests.storage2.conftest import as_vmail, crlf, message, open_cote, oracle_conf
from tests.support.dovecot import DovecotOracle, dovecot_available
from tests.support.env import remove_dir, server_dir
from tests.support.listener import ThreadedListener

WARN_PLUGIN = {
    "quota": "maildir:User quota",
    "quota_rule": "*:storage=10k",
    "quota_warning": "storage=80%% quota-warning 80 %u",
    "quota_warning2": "storage=50%% quota-warning 50 %u",
    "quota_warning3": "-storage=50%% quota-warning below %u",
}
# appends (size) and expunges (-n: the first n messages) in order
STEPS = [3000, 1000, 2000, 3000, -2, 3000, -3]


class Recorder:
    """A UNIX socket server keeping every request it receives."""

    def __init__(self, path: Path) -> None:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        path.chmod(0o666)
        sock.listen(8)
        self.requests: list[bytes] = []
        self.listener = ThreadedListener(sock, self._keep)

    def _keep(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
            self.requests.append(data)

    def wait(self, n: int) -> list[bytes]:
        deadline = time.monotonic() + 5
        while len(self.requests) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.requests

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def rundir() -> Iterator[Path]:
    d = server_dir("quota-warn")
    d.chmod(0o777)
    try:
        yield d
    finally:
        remove_dir(d)


def run_steps(mailboxes_root: Path, quota_kw: dict[str, object]) -> None:
    mailboxes, _ = open_cote(mailboxes_root, plugin=WARN_PLUGIN, **quota_kw)
    with mailboxes.open("INBOX") as box:
        for step in STEPS:
            if step > 0:
                box.append(message(step))
            else:
                box.sync()
                box.store(box.uids[:-step], "+", ["\\Deleted"])
                box.expunge()
    mailboxes.close()


def test_request_on_a_unix_socket(rundir: Path) -> None:
    rec = Recorder(rundir / "quota-warning")
    try:
        with as_vmail():
            run_steps(rundir / "mail", {"base_dir": str(rundir),
                                        "variables": {"user": "u@example.org"}})
        reqs = rec.wait(4)
    finally:
        rec.close()
    # 3000+1000 crosses 50% (5120), +2000 = 6000 ... +3000 = 9000 crosses 80% (8192);
    # expunging 4000 goes to 5000: below 50%; +3000 = 8000 crosses 50% again;
    # expunging three goes back under 50%
    assert reqs == [
        b"VERSION\tscript\t4\t0\nnoreply\n50\nu@example.org\n\n",
        b"VERSION\tscript\t4\t0\nnoreply\n80\nu@example.org\n\n",
        b"VERSION\tscript\t4\t0\nnoreply\nbelow\nu@example.org\n\n",
        b"VERSION\tscript\t4\t0\nnoreply\n50\nu@example.org\n\n",
        b"VERSION\tscript\t4\t0\nnoreply\nbelow\nu@example.org\n\n",
    ][: len(reqs)]
    assert len(reqs) == 5


def test_unreachable_service_only_logs(rundir: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert not send_warning(["quota-warning", "95", "u"], str(rundir))
    assert "quota: warning quota-warning: connect(" in caplog.text
    got: list[list[str]] = []
    q = Quota.from_settings(WARN_PLUGIN, on_warning=lambda cmd: got.append(list(cmd)),
                            variables={"user": "x"})
    assert q is not None
    with as_vmail():
        mailboxes = MaildirList(f"maildir:{rundir}/m2", quota=q)
        q.attach(mailboxes)
        with mailboxes.open("INBOX") as box:
            box.append(message(6000))
        mailboxes.close()
    assert got == [["quota-warning", "50", "x"]]  # only the first matching warning runs


SCRIPT = """#!/bin/sh
echo "$@" >> {log}
"""


def test_same_warnings_as_dovecot_through_cotes_script_service(rundir: Path) -> None:
    if not dovecot_available():
        pytest.skip("Dovecot is not installed")
    for name in ("dovecot", "cote"):
        script = rundir / f"warn-{name}.sh"
        script.write_text(SCRIPT.format(log=rundir / f"{name}.log"))
        script.chmod(0o755)
    service = """
service quota-warning {{
  executable = script {script}
  unix_listener quota-warning {{
    mode = 0666
  }}
}}
"""
    dc = DovecotOracle(users={"user1": "pw"}, extra_conf=oracle_conf(WARN_PLUGIN)
                       + service.format(script=rundir / "warn-dovecot.sh"))
    (rundir / "master").mkdir()
    master = MasterServer(rundir / "master",
                          f"base_dir = {rundir}/master/run\nlog_path = {rundir}/master/cote.log\n"
                          "protocols =\n" + service.format(script=rundir / "warn-cote.sh"))
    dc.start()
    try:
        m = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
        m.login("user1", "pw")
        m.select("INBOX")
        for step in STEPS:
            if step > 0:
                assert m.append("INBOX", None, None, crlf(message(step)))[0] == "OK"
            else:
                m.store(f"1:{-step}", "+FLAGS", "\\Deleted")
                m.expunge()
        m.logout()
        master.start()
        with as_vmail():
            run_steps(rundir / "cote-mail", {"base_dir": str(rundir / "master" / "run"),
                                             "variables": {"user": "user1"}})
        deadline = time.monotonic() + 10
        want = (rundir / "dovecot.log")
        while time.monotonic() < deadline:
            got = rundir / "cote.log"
            if want.exists() and got.exists() and \
                    len(got.read_text().splitlines()) >= len(want.read_text().splitlines()):
                break
            time.sleep(0.05)
        # each warning is its own script process: they may finish in any order
        expected = sorted(["50 user1", "80 user1", "below user1", "50 user1", "below user1"])
        assert sorted(want.read_text().splitlines()) == expected
        assert sorted((rundir / "cote.log").read_text().splitlines()) == expected
    finally:
        master.stop()
        dc.cleanup()
