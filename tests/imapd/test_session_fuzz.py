"""The whole IMAP session (parser, commands, storage) under random and mutated command
streams on a real Maildir: ``fuzz_session`` lets any exception escape, so hypothesis
finds crashes; every tagged command must get its tagged reply and no traceback may reach
the client. Bounded: a few hundred examples, well under 30 seconds."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cote.mailproc.imap.fuzz import SESSION_CORPUS, fuzz_session
from cote.storage.maildir.list import MaildirList

MESSAGES = [
    b"From: alice@example.com\r\nSubject: one\r\nDate: Mon, 19 Jul 2021 10:00:00 +0000\r\n"
    b"Message-ID: <a@x>\r\n\r\nbody one\r\n",
    b"Subject: two\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\nYWJj\r\n--b\r\n"
    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"caf=E9\r\n--b--\r\n",
    b"Subject: three\nReferences: <a@x>\n\nbare LF body\n",
]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The Maildir every run starts from (made once for the module)."""
    root: Path = tmp_path_factory.mktemp("fuzzmail")
    mlist = MaildirList(f"maildir:{root}")
    for name in ("Archive", "Trash"):
        mlist.create(name)
    with mlist.open("INBOX") as box:
        for msg in MESSAGES * 2:
            box.append(msg, ["\\Seen"] if msg is MESSAGES[0] else [])
    mlist.close()
    yield root


@contextmanager
def fresh_copy(pristine: Path) -> Iterator[Path]:
    """A copy of the pristine Maildir for one run: a stream's COPY 1:* into the mailbox it
    has selected doubles it, and on a store shared by hundreds of runs that growth was
    exponential (seen: a run that never ended at 1 GB)."""
    with tempfile.TemporaryDirectory(prefix="fuzzrun") as tmp:
        root = Path(tmp) / "mail"
        shutil.copytree(pristine, root, symlinks=True)
        yield root


def check(output: bytes) -> None:
    assert b"Traceback" not in output
    assert b"Internal error" not in output, output[-2000:]


@settings(max_examples=400, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.integers(0, 255), st.lists(st.sampled_from(SESSION_CORPUS), min_size=1, max_size=14),
       st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6))
def test_mutated_command_streams_are_all_answered(pristine: Path, first: int,
                                                  commands: list[bytes],
                                                  flips: list[tuple[int, int]]) -> None:
    data = bytearray(bytes([first]) + b"".join(commands))
    for at, value in flips:
        data[1 + at % (len(data) - 1)] = value
    with fresh_copy(pristine) as store:
        check(fuzz_session(bytes(data), MaildirList(f"maildir:{store}")))


@settings(max_examples=200, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_random_bytes_are_all_answered(pristine: Path, data: bytes) -> None:
    with fresh_copy(pristine) as store:
        check(fuzz_session(b"\x07a SELECT INBOX\r\n" + data, MaildirList(f"maildir:{store}")))


def test_a_run_reaches_the_mailbox(pristine: Path) -> None:
    """The driver really runs commands on the Maildir: SELECT, FETCH and LOGOUT answered."""
    with fresh_copy(pristine) as store:
        out = fuzz_session(b"\x05a SELECT INBOX\r\nb FETCH 1:* (FLAGS)\r\nc LOGOUT\r\n",
                           MaildirList(f"maildir:{store}"))
    assert b" EXISTS\r\n" in out
    assert b"\r\na OK [READ-WRITE]" in out and b"\r\nb OK Fetch completed" in out
    assert b"c OK Logout completed" in out
