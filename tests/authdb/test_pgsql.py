"""driver = sql with PostgreSQL: cote and Dovecot on the same dovecot-sql.conf.ext."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from tests.authdb.sqlcases import *  # noqa: F403 - the shared test functions
from tests.authdb.sqlcases import Outage, auth_blocks, conf_ext, insert_script, schema
from tests.authdb.wire import Pair, converse, plain, start_pair
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


def _peak_sleepers(server: PostgresServer, stop: threading.Event) -> int:
    """Most password queries seen running at once in pg_stat_activity until ``stop``."""
    peak = 0
    with psycopg.connect(server.connect_string, autocommit=True) as conn:
        while not stop.is_set():
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                               "AND query LIKE '%pg_sleep(0.5)%' "
                               "AND pid <> pg_backend_pid()").fetchone()
            peak = max(peak, row[0] if row else 0)
            time.sleep(0.05)
    return peak


@pytest.mark.parametrize("maxconns", [1, 4])
def test_lookups_run_concurrently_up_to_maxconns(server: PostgresServer, maxconns: int) -> None:
    """20 logins whose password_query sleeps 0.5 s: PostgreSQL sees exactly ``maxconns`` of
    them at once (cote's pool), so they take about ceil(20/maxconns) * 0.5 s (not asserted:
    measured by overlap)."""
    ext = server.dir / f"slow-{maxconns}.conf.ext"
    ext.write_text(conf_ext("pgsql", f"{server.connect_string} maxconns={maxconns}").replace(
        "FROM users WHERE username = '%u'\n", "FROM users, pg_sleep(0.5) WHERE username = '%u'\n",
        1))
    ext.chmod(0o644)
    for pair in start_pair(auth_blocks(ext)):
        _, ours_path = pair.sockets("auth-client")
        stop = threading.Event()
        with ThreadPoolExecutor(21) as pool:
            watcher = pool.submit(_peak_sleepers, server, stop)
            replies = list(pool.map(converse, [ours_path] * 20,
                                    [[plain("bob", "bobpw")]] * 20))
            stop.set()
            peak = watcher.result()
        assert all(r[0].startswith("OK") for r in replies), replies
        assert peak == maxconns, peak
