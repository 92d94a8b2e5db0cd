"""Shared fixtures. Servers are started per module (one throwaway server per module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.dovecot import DovecotOracle, dovecot_available


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotOracle]:
    """A Debian Dovecot with user1/pass1 and user2/pass2 on maildir, for differential tests."""
    if not dovecot_available():
        pytest.fail("Debian's dovecot-core is not installed: run scripts/test (it installs it)")
    oracle = DovecotOracle(users={"user1": "pass1", "user2": "pass2"})
    oracle.start()
    yield oracle
    oracle.cleanup()
