"""Fixtures for the login tests: a mail store with users, without starting Dovecot."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.dovecot import DovecotOracle


@pytest.fixture(scope="module")
def store() -> Iterator[DovecotOracle]:
    """Users u1/p1 and u2/p2 in a passwd-file with maildirs (``store.dir / "users"``)."""
    dc = DovecotOracle(users={"u1": "p1", "u2": "p2"})
    dc.write_config()
    try:
        yield dc
    finally:
        dc.cleanup()
