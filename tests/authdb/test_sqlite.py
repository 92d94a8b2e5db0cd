"""driver = sql with SQLite: cote and Dovecot on the same conf.ext and database file."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator

import pytest

from tests.authdb.sqlcases import *  # noqa: F403 - the shared test functions
from tests.authdb.sqlcases import Outage, auth_blocks, conf_ext, insert_script, schema
from tests.authdb.wire import Pair, start_pair
from tests.support.env import remove_dir, server_dir


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    d = server_dir("sqlite")
    os.chmod(d, 0o777)  # Dovecot's auth process (user dovecot) opens the file read-write
    db = d / "users.db"
    con = sqlite3.connect(db)
    con.executescript(schema("TEXT") + insert_script())
    con.commit()
    con.close()
    os.chmod(db, 0o666)
    ext = d / "dovecot-sql.conf.ext"
    ext.write_text(conf_ext("sqlite", str(db)))
    try:
        yield from start_pair(auth_blocks(ext))
    finally:
        remove_dir(d)


@pytest.fixture(scope="module")
def outage() -> Outage | None:
    return None  # no server to stop: an open SQLite file stays readable
