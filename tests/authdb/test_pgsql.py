"""driver = sql with PostgreSQL: cote and Dovecot on the same dovecot-sql.conf.ext."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.authdb.sqlcases import *  # noqa: F403 - the shared test functions
from tests.authdb.sqlcases import Outage, auth_blocks, conf_ext, insert_script, schema
from tests.authdb.wire import Pair, start_pair
from tests.support.postgres import PostgresServer, postgres_available

pytestmark = pytest.mark.skipif(not postgres_available(), reason="PostgreSQL not installed")


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with PostgresServer() as pg:
        pg.sql(schema("text") + insert_script())
        yield pg


@pytest.fixture(scope="module")
def pair(server: PostgresServer) -> Iterator[Pair]:
    ext = server.dir / "dovecot-sql.conf.ext"
    ext.write_text(conf_ext("pgsql", f"{server.connect_string} host=127.0.0.2"))
    ext.chmod(0o644)
    yield from start_pair(auth_blocks(ext))


@pytest.fixture(scope="module")
def outage(server: PostgresServer) -> Outage:
    return Outage(server.stop, server.start)
