"""The three SQL clients behind ``driver = sql``: PostgreSQL (psycopg 3, async), MySQL/MariaDB
(PyMySQL) and SQLite (stdlib), all with one call: ``await backend.select(render)``.

``render(escape)`` builds the query text with the connection's own string escaping (a query
is rendered on the connection that runs it, as libpq's and MySQL's escaping depend on the
server's settings). Results come back as text, as Dovecot sees them (libpq's text format,
MySQL's text protocol): ``Result(columns, rows)`` with ``None`` for NULL.

Connection limits and failure handling follow Dovecot's ``connect`` settings: ``maxconns=N``
(default 5) bounds concurrent queries per database; several ``host=`` are tried in order; a
failed connect makes lookups fail at once for ``RETRY_DELAY`` seconds and is then retried, so
a database restart needs no cote restart. Blocking clients run in a thread pool of
``maxconns`` threads, each with its own connection.
"""

from __future__ import annotations

import abc
import asyncio
import ctypes
import shlex
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
import pymysql
from psycopg.pq import Escaping
from pymysql.constants import SERVER_STATUS

from cote.auth.drivers.base import DriverError
from cote.auth.drivers.fields import HostileValue

Escape = Callable[[str], str]
Render = Callable[[Escape], str]

DEFAULT_MAXCONNS = 5
CONNECT_TIMEOUT = 5  # seconds, unless connect= sets connect_timeout
QUERY_TIMEOUT = 10.0
SQLITE_THREADS = 2  # a local file: more threads only add memory
RETRY_DELAY = 0.5  # after a failed connect, fail lookups at once for this long


class ConnectError(Exception):
    """A backend server could not answer."""


class SqlError(ConnectError):
    """The query could not run (database down, connection lost, SQL error)."""


@dataclass(frozen=True, slots=True)
class Result:
    columns: tuple[str, ...]
    rows: list[tuple[str | None, ...]]


class Backend(Protocol):
    async def select(self, render: Render) -> Result: ...


def parse_connect(connect: str) -> list[tuple[str, str]]:
    """``key=value`` words (values may be quoted as in libpq), in order, repeats kept."""
    try:
        words = shlex.split(connect, posix=True)
    except ValueError as e:
        raise DriverError(f"sql: connect: {e}") from e
    pairs = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq:
            raise DriverError(f"sql: connect: expected key=value, got {word!r}")
        pairs.append((key.strip(), value))
    return pairs


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "surrogateescape")
    return str(value)


def _no_nul(value: str) -> str:
    if "\0" in value:
        raise HostileValue("value contains NUL")
    return value


class ConnectGate:
    """Fail fast for a moment after a failed connect instead of retrying on every lookup."""

    def __init__(self, error: type[ConnectError] = SqlError) -> None:
        self.error = error
        self.down_until = 0.0
        self.last_error = ""

    def check(self) -> None:
        if time.monotonic() < self.down_until:
            raise self.error(f"Not connected to server ({self.last_error})")

    def failed(self, error: BaseException) -> ConnectError:
        self.last_error = str(error).strip().splitlines()[0] if str(error).strip() else \
            type(error).__name__
        self.down_until = time.monotonic() + RETRY_DELAY
        return self.error(f"Connect failed: {self.last_error}")


# -- PostgreSQL ---------------------------------------------------------------------------------
class PgsqlBackend:
    def __init__(self, connect: str) -> None:
        params: dict[str, str] = {}
        hosts: list[str] = []
        maxconns = DEFAULT_MAXCONNS
        for key, value in parse_connect(connect):
            if key == "host":
                hosts.append(value)
            elif key == "maxconns":
                maxconns = _positive(key, value)
            else:
                params[key] = value
        if hosts:
            # libpq tries a comma-separated host list in order: Dovecot's several host=.
            params["host"] = ",".join(hosts)
        params.setdefault("connect_timeout", str(CONNECT_TIMEOUT))
        self.conninfo = psycopg.conninfo.make_conninfo(**params)
        self.limit = asyncio.Semaphore(maxconns)
        self.idle: list[psycopg.AsyncConnection[Any]] = []
        self.gate = ConnectGate()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed and not conn.broken:
                return conn
        self.gate.check()
        try:
            return await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        except psycopg.Error as e:
            raise self.gate.failed(e) from e

    async def select(self, render: Render) -> Result:
        async with self.limit:
            conn = await self._connection()
            keep = False
            try:
                escaping = Escaping(conn.pgconn)

                def escape(value: str) -> str:
                    raw = escaping.escape_string(_no_nul(value).encode("utf-8",
                                                                       "surrogateescape"))
                    return bytes(raw).decode("utf-8", "surrogateescape")

                query = render(escape)
                cur = conn.cursor()
                await asyncio.wait_for(cur.execute(query.encode("utf-8", "surrogateescape"),
                                                   prepare=False), QUERY_TIMEOUT)
                res = cur.pgresult
                keep = True
                if res is None or res.nfields == 0:
                    return Result((), [])
                columns = tuple((res.fname(i) or b"").decode("utf-8", "surrogateescape")
                                for i in range(res.nfields))
                rows = [tuple(_text(res.get_value(r, c)) for c in range(res.nfields))
                        for r in range(res.ntuples)]
                return Result(columns, rows)
            except psycopg.Error as e:
                keep = not conn.broken
                raise SqlError(str(e).strip() or type(e).__name__) from e
            except TimeoutError as e:
                raise SqlError(f"Query timed out after {QUERY_TIMEOUT:g} s") from e
            finally:
                if keep and not conn.broken and not conn.closed:
                    self.idle.append(conn)
                else:
                    await conn.close()


# -- blocking clients in threads --------------------------------------------------------------
M_ARENA_MAX = -8  # glibc mallopt parameter


def limit_malloc_arenas() -> None:
    """glibc reserves 64 MiB of address space per thread's malloc arena; the auth process runs
    under vsz_limit (RLIMIT_AS), so threads share two arenas instead."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(M_ARENA_MAX, 2)
    except (OSError, AttributeError):
        pass


class _ThreadedBackend(abc.ABC):
    """A pool of threads, each with its own connection (made on first use and after errors)."""

    def __init__(self, maxconns: int) -> None:
        limit_malloc_arenas()
        self.pool = ThreadPoolExecutor(max_workers=maxconns, thread_name_prefix="auth-sql")
        self.local = threading.local()
        self.gate = ConnectGate()

    async def select(self, render: Render) -> Result:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, self._select, render)

    @abc.abstractmethod
    def _select(self, render: Render) -> Result: ...


class MysqlBackend(_ThreadedBackend):
    OPTIONS = frozenset({"port", "dbname", "user", "password", "client_flags", "connect_timeout",
               "read_timeout", "write_timeout", "ssl_ca", "ssl_ca_path", "ssl_cert",
               "ssl_key", "ssl_cipher", "ssl_verify_server_cert", "option_file",
               "option_group", "maxconns", "host"})

    def __init__(self, connect: str) -> None:
        self.hosts: list[str] = []
        self.kwargs: dict[str, Any] = {"charset": "utf8mb4", "conv": {},
                                       "connect_timeout": CONNECT_TIMEOUT,
                                       "read_timeout": QUERY_TIMEOUT,
                                       "write_timeout": QUERY_TIMEOUT, "autocommit": True}
        maxconns = DEFAULT_MAXCONNS
        ssl: dict[str, Any] = {}
        for key, value in parse_connect(connect):
            if key not in self.OPTIONS:
                raise DriverError(f"mysql: Unknown connect string: {key}")
            if key == "host":
                self.hosts.append(value)
            elif key == "maxconns":
                maxconns = _positive(key, value)
            elif key in ("port", "client_flags", "connect_timeout", "read_timeout",
                         "write_timeout"):
                self.kwargs[key] = _positive(key, value, zero=True)
            elif key == "dbname":
                self.kwargs["database"] = value
            elif key in ("user", "password"):
                self.kwargs[key] = value
            elif key == "option_file":
                self.kwargs["read_default_file"] = value
            elif key == "option_group":
                self.kwargs["read_default_group"] = value
            elif key == "ssl_verify_server_cert":
                ssl["check_hostname"] = value in ("yes", "1")
            else:
                ssl[{"ssl_ca": "ca", "ssl_ca_path": "capath", "ssl_cert": "cert",
                     "ssl_key": "key", "ssl_cipher": "cipher"}[key]] = value
        if ssl:
            self.kwargs["ssl"] = ssl
        else:
            self.kwargs["ssl_disabled"] = True  # TLS only when ssl_* asks for it, as Dovecot
        if "client_flags" in self.kwargs:
            self.kwargs["client_flag"] = self.kwargs.pop("client_flags")
        super().__init__(maxconns)

    def _connect(self) -> Any:
        self.gate.check()
        error: Exception | None = None
        for host in self.hosts or ["localhost"]:
            where = {"unix_socket": host} if host.startswith("/") else {"host": host}
            try:
                return pymysql.connect(**where, **self.kwargs)
            except (pymysql.MySQLError, OSError) as e:
                error = e
        assert error is not None
        raise self.gate.failed(error)

    def _select(self, render: Render) -> Result:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = self._connect()
        try:
            query = render(lambda value: _mysql_escape(conn, _no_nul(value)))
            with conn.cursor() as cur:
                cur.execute(query)
                columns = tuple(d[0] for d in cur.description or ())
                rows = [tuple(_text(v) for v in row) for row in cur.fetchall()]
            return Result(columns, rows)
        except (pymysql.err.OperationalError, pymysql.err.InterfaceError, OSError) as e:
            self.local.conn = None
            try:
                conn.close()
            except pymysql.MySQLError:
                pass
            raise SqlError(str(e)) from e
        except pymysql.MySQLError as e:
            raise SqlError(str(e)) from e


def _mysql_escape(conn: Any, value: str) -> str:
    """mysql_real_escape_string: backslash escapes, or a doubled quote when the server runs
    with NO_BACKSLASH_ESCAPES."""
    status = conn.server_status or 0
    if status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES:
        return value.replace("'", "''")
    return str(pymysql.converters.escape_string(value))


class SqliteBackend(_ThreadedBackend):
    def __init__(self, connect: str) -> None:
        path = connect.strip()
        if not path:
            raise DriverError("sqlite: connect must name the database file")
        self.path = path
        super().__init__(SQLITE_THREADS)

    def _select(self, render: Render) -> Result:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(f"file:{self.path}?mode=rw", uri=True,
                                       timeout=QUERY_TIMEOUT, isolation_level=None)
            except sqlite3.Error as e:
                raise SqlError(f"Can't open {self.path}: {e}") from e
            self.local.conn = conn
        query = render(lambda value: _no_nul(value).replace("'", "''"))
        try:
            cur = conn.execute(query)
            columns = tuple(d[0] for d in cur.description or ())
            rows = [tuple(_text(v) for v in row) for row in cur.fetchall()]
        except (sqlite3.Error, ValueError) as e:
            raise SqlError(str(e)) from e
        return Result(columns, rows)


def _positive(key: str, value: str, *, zero: bool = False) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < (0 if zero else 1):
        raise DriverError(f"sql: connect: {key}={value!r} is not a valid number")
    return number


def create(driver: str, connect: str) -> Backend:
    if driver == "pgsql":
        return PgsqlBackend(connect)
    if driver == "mysql":
        return MysqlBackend(connect)
    if driver == "sqlite":
        return SqliteBackend(connect)
    raise DriverError(f"sql: driver {driver!r} is not one of pgsql, mysql, sqlite")
