"""``driver = sql``: passdb/userdb lookups in PostgreSQL, MySQL/MariaDB or SQLite, configured by
an unchanged ``dovecot-sql.conf.ext`` (``args``).

Queries are the admin's templates; every ``%`` variable substituted into them is quoted with
the database's own string escaping (libpq's ``PQescapeStringConn``, MySQL's backslash rules,
SQLite's doubled quote) and a value with a NUL byte is never sent, so a user name cannot
change a query's meaning. The backends (``cote.auth.drivers.sqlbackends``) keep a bounded
number of connections, so lookups run concurrently up to that limit and the auth event loop
never blocks; a database that is down fails lookups at once (``temp_fail``) and is reconnected
to on a later lookup.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from cote.auth.cache import cache_key_template
from cote.auth.drivers import sqlbackends
from cote.auth.drivers.base import (
    DriverError,
    PassdbDriver,
    PassdbLookup,
    UserdbDriver,
    UserdbLookup,
)
from cote.auth.drivers.extconf import read
from cote.auth.drivers.fields import HostileValue, passdb_row, userdb_row
from cote.auth.mechanisms import PassdbResult
from cote.auth.request import AuthRequest
from cote.variables import VariableError, compile_template

SETTINGS = {
    "driver": "",
    "connect": "",
    "password_query": "SELECT username, domain, password FROM users "
                      "WHERE username = '%n' AND domain = '%d'",
    "user_query": "SELECT home, uid, gid FROM users WHERE username = '%n' AND domain = '%d'",
    "update_query": "UPDATE users SET password = '%w' WHERE username = '%n' AND domain = '%d'",
    "iterate_query": "SELECT username, domain FROM users",
    "default_pass_scheme": "MD5",
    "userdb_warning_disable": "no",
}


@dataclass(frozen=True, slots=True)
class Failure:
    result: PassdbResult
    log: str


_OPEN: dict[str, SqlDatabase] = {}  # one backend per args file, shared by passdb and userdb


class SqlDatabase:
    """One ``.conf.ext`` file: its settings and the backend shared by passdb and userdb."""

    def __init__(self, path: str) -> None:
        settings = dict(SETTINGS)
        settings.update(read(path, SETTINGS, kind="sql"))
        self.settings = settings
        self.default_scheme = settings["default_pass_scheme"]
        self.backend = sqlbackends.create(settings["driver"], settings["connect"])
        try:
            for query in ("password_query", "user_query", "iterate_query"):
                compile_template(settings[query])
        except VariableError as e:
            raise DriverError(f"sql: {path}: {e}") from e

    @classmethod
    def shared(cls, args: str) -> SqlDatabase:
        path = args.strip()
        if not path:
            raise DriverError("sql: args must name a dovecot-sql.conf.ext file")
        db = _OPEN.get(path)
        if db is None:
            db = _OPEN[path] = cls(path)
        return db

    async def run(self, query: str, request: AuthRequest) -> sqlbackends.Result | Failure:
        """The rows of a ``*_query`` setting for this request, or why there are none."""
        template = compile_template(self.settings[query])
        values = request.values()
        fields = {"passdb": {k: v or "" for k, v in request.passdb_fields.items()},
                  "userdb": {k: v or "" for k, v in request.userdb_fields.items()}}

        def render(escape: sqlbackends.Escape) -> str:
            return template.expand(values, escape=escape, fields=fields)

        what = "Password query" if query == "password_query" else "User query"
        try:
            result = await self.backend.select(render)
        except HostileValue as e:
            return Failure(PassdbResult.USER_UNKNOWN, f"unknown user ({e})")
        except VariableError as e:
            return Failure(PassdbResult.INTERNAL_FAILURE, f"Failed to expand {query}: {e}")
        except sqlbackends.SqlError as e:
            return Failure(PassdbResult.INTERNAL_FAILURE, f"{what} failed: {e}")
        if not result.rows:
            return Failure(PassdbResult.USER_UNKNOWN, "unknown user")
        return result


class SqlPassdb(PassdbDriver):
    name = "sql"

    def __init__(self, args: str) -> None:
        super().__init__(args)
        self.db = SqlDatabase.shared(args)
        self.cache_key = cache_key_template(self.db.settings["password_query"])

    async def lookup(self, request: AuthRequest) -> PassdbLookup:
        db = self.db
        result = await db.run("password_query", request)
        if isinstance(result, Failure):
            return PassdbLookup(result.result, log=result.log)
        has_password = "password" in result.columns or "password_noscheme" in result.columns
        if has_password and len(result.rows) > 1:
            return PassdbLookup(PassdbResult.INTERNAL_FAILURE,
                                log="Password query returned multiple matches")
        return passdb_row(request, zip(result.columns, result.rows[0], strict=True),
                          db.default_scheme, has_password=has_password)


class SqlUserdb(UserdbDriver):
    name = "sql"

    def __init__(self, args: str) -> None:
        super().__init__(args)
        self.db = SqlDatabase.shared(args)
        self.cache_key = cache_key_template(self.db.settings["user_query"])

    async def lookup(self, request: AuthRequest) -> UserdbLookup:
        result = await self.db.run("user_query", request)
        if isinstance(result, Failure):
            return UserdbLookup(result.result, log=result.log)
        return UserdbLookup(PassdbResult.OK,
                            userdb_row(request, zip(result.columns, result.rows[0], strict=True)))

    def can_iterate(self) -> bool:
        return bool(self.db.settings["iterate_query"].strip())

    async def iterate(self) -> AsyncIterator[str]:
        query = self.db.settings["iterate_query"]
        try:
            result = await self.db.backend.select(lambda escape: query)
        except sqlbackends.SqlError:
            return
        columns = result.columns
        for row in result.rows:
            values = dict(zip(columns, row, strict=True))
            user = values.get("user")
            if user is None and values.get("username") is not None:
                user = values["username"]
                if values.get("domain"):
                    user = f"{user}@{values['domain']}"
            if user:
                yield user
