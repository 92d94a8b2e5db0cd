"""A real ManageSieve client, Debian's sieve-connect, uploads and activates through cote.

sieve-connect negotiates STARTTLS, verifies cote's self-signed certificate (given as its CA)
and logs in with PLAIN; the script lands in Pigeonhole's layout, active, and the login line
says TLS. Dovecot only provides the passwd-file and homes here (the shared fixture).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.managesieve.support import Pair, server_pair

SIEVE_CONNECT = shutil.which("sieve-connect")
pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(SIEVE_CONNECT is None, reason="sieve-connect is not installed")]

SCRIPT = b'require ["fileinto"];\r\nif header :contains "subject" "[list]" {\r\n' \
         b'  fileinto "Lists";\r\n}\r\n'


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with server_pair() as p:
        yield p


def sieve_connect(pair: Pair, *args: str) -> subprocess.CompletedProcess[str]:
    assert SIEVE_CONNECT is not None
    read, write = os.pipe()
    os.write(write, b"pass1\n")
    os.close(write)
    try:
        return subprocess.run(
            [SIEVE_CONNECT, "--server", "127.0.0.1", "--port", str(pair.ports["cote"]),
             "--user", "user1", "--passwordfd", str(read), "--authmech", "PLAIN",
             "--tlscafile", str(pair.cote.cert), "--tlshostname", "localhost",
             "--noclearchan", *args],
            capture_output=True, text=True, timeout=60, pass_fds=(read,), check=False)
    finally:
        os.close(read)


def test_upload_activate_list_download(pair: Pair, tmp_path: Path) -> None:
    pair.reset_home("user1")
    local = tmp_path / "lists.sieve"
    local.write_bytes(SCRIPT)
    up = sieve_connect(pair, "--upload", "--localsieve", str(local), "--remotesieve", "lists")
    assert up.returncode == 0, up.stderr
    act = sieve_connect(pair, "--activate", "--remotesieve", "lists")
    assert act.returncode == 0, act.stderr
    listed = sieve_connect(pair, "--list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == '"lists" ACTIVE\n', listed.stdout
    back = tmp_path / "back.sieve"
    down = sieve_connect(pair, "--download", "--remotesieve", "lists", "--localsieve",
                         str(back))
    assert down.returncode == 0, down.stderr
    assert back.read_bytes() == SCRIPT

    home = pair.home("user1")
    assert (home / "sieve" / "lists.sieve").read_bytes() == SCRIPT
    assert os.readlink(home / ".dovecot.sieve") == "sieve/lists.sieve"
    logins = pair.cote.wait_for_log("managesieve-login: Info: Login: user=<user1>")
    assert logins and all(", TLS, " in line for line in logins), logins


def test_refused_script_reports_the_error(pair: Pair, tmp_path: Path) -> None:
    local = tmp_path / "bad.sieve"
    local.write_bytes(b"keep;\r\nfoo;\r\n")
    run = sieve_connect(pair, "--upload", "--localsieve", str(local), "--remotesieve", "bad")
    assert run.returncode != 0
    assert "unknown command 'foo'" in run.stdout + run.stderr
    assert not (pair.home("user1") / "sieve" / "bad.sieve").exists()
