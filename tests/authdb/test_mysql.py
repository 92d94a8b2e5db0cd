"""driver = sql with MariaDB (MySQL protocol): cote and Dovecot on the same conf.ext."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.authdb.sqlcases import *  # noqa: F403 - the shared test functions
from tests.authdb.sqlcases import Outage, auth_blocks, conf_ext, insert_script, schema
from tests.authdb.wire import Pair, start_pair
from tests.support.mariadb import MariadbServer, mariadb_available

pytestmark = pytest.mark.skipif(not mariadb_available(), reason="MariaDB not installed")


def mysql_quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


@pytest.fixture(scope="module")
def server() -> Iterator[MariadbServer]:
    with MariadbServer() as db:
        db.sql(schema("VARCHAR(255) CHARACTER SET utf8mb4") + insert_script(mysql_quote))
        yield db


@pytest.fixture(scope="module")
def pair(server: MariadbServer) -> Iterator[Pair]:
    ext = server.dir / "dovecot-sql.conf.ext"
    # A second host that refuses connections: failover to the working one.
    ext.write_text(conf_ext("mysql", f"host=127.0.0.2 {server.connect_string}"))
    ext.chmod(0o644)
    yield from start_pair(auth_blocks(ext))


@pytest.fixture(scope="module")
def outage(server: MariadbServer) -> Outage:
    return Outage(server.stop, server.start)
