"""Fixtures for the IMAP protocol core: a logged-in raw session on the Dovecot oracle."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.imap.oracle import RawImap, logged_in_session, prepare_mailbox
from tests.support.dovecot import DovecotOracle


class OracleSession:
    """A raw session to Dovecot with INBOX selected; reconnects after Dovecot hangs up."""

    def __init__(self, port: int, enable: bytes | None = None) -> None:
        self.port = port
        self.enable = enable
        self.raw: RawImap = self._connect()

    def _connect(self) -> RawImap:
        raw = logged_in_session(self.port)
        if self.enable:
            raw.exchange(b"e ENABLE " + self.enable + b"\r\n")
        prepare_mailbox(raw)
        return raw

    def reconnect(self) -> None:
        self.raw.close()
        self.raw = self._connect()


@pytest.fixture(scope="module")
def oracle_session(dovecot: DovecotOracle) -> Iterator[OracleSession]:
    s = OracleSession(dovecot.ports["imap"])
    yield s
    s.raw.close()


@pytest.fixture(scope="module")
def qresync_session(dovecot: DovecotOracle) -> Iterator[OracleSession]:
    s = OracleSession(dovecot.ports["imap"], enable=b"QRESYNC")
    yield s
    s.raw.close()
