"""Auth backends for ``python -m bench auth --backend …``: a real PostgreSQL, MariaDB, SQLite
file, slapd or PAM stack holding the bench users, and the passdb block both servers get.

The servers are the test suite's throwaway fixtures (``tests/support``); each backend is
started once for the whole bench run and stopped at exit. The passdb comes after the bench
config's (empty) passwd-file, so every AUTH is answered by the backend: no auth cache, each
request one query / search / PAM conversation. ``pool`` says what bounds concurrency (the
same default on both servers unless noted).
"""

from __future__ import annotations

import atexit
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.support.env import remove_dir, server_dir
from tests.support.mariadb import MariadbServer
from tests.support.pamuser import PamUser
from tests.support.postgres import PostgresServer
from tests.support.slapd import SUFFIX, SlapdServer

BACKENDS = ("passwd-file", "pgsql", "mysql", "sqlite", "ldap", "pam")
SQL_QUERY = ("password_query = SELECT username AS user, password FROM users "
             "WHERE username = '%u'\n")


@dataclass
class Backend:
    name: str
    users: dict[str, str]  # user -> password, as the load generator logs in
    passdb: str  # the passdb block(s) after the bench config's passwd-file
    pool: str  # what bounds concurrent lookups, for the figure's label


def _conf_ext(directory: Path, text: str) -> Path:
    path = directory / "dovecot-backend.conf.ext"
    path.write_text(text)
    path.chmod(0o644)
    return path


def _block(driver: str, args: str | Path) -> str:
    return f"passdb {{\n  driver = {driver}\n  args = {args}\n}}\n"


def _rows(users: dict[str, str]) -> str:
    return ", ".join(f"('{u}', '{{PLAIN}}{p}')" for u, p in users.items())


def _sql_server(driver: str, server: PostgresServer | MariadbServer,
                users: dict[str, str]) -> Backend:
    server.start()
    atexit.register(server.cleanup)
    server.sql(f"CREATE TABLE users (username VARCHAR(64), password VARCHAR(128));\n"
               f"INSERT INTO users VALUES {_rows(users)};\n")
    ext = _conf_ext(server.dir, f"driver = {driver}\nconnect = {server.connect_string}\n"
                                f"{SQL_QUERY}")
    return Backend(driver, users, _block("sql", ext), "maxconns 5")


def _pgsql(users: dict[str, str]) -> Backend:
    return _sql_server("pgsql", PostgresServer(), users)


def _mysql(users: dict[str, str]) -> Backend:
    return _sql_server("mysql", MariadbServer(), users)


def _sqlite(users: dict[str, str]) -> Backend:
    directory = server_dir("bench-sqlite")
    atexit.register(remove_dir, directory)
    path = directory / "users.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE users (username TEXT, password TEXT)")
        con.executemany("INSERT INTO users VALUES (?, ?)",
                        [(u, "{PLAIN}" + p) for u, p in users.items()])
    con.close()
    path.chmod(0o644)
    ext = _conf_ext(directory, f"driver = sqlite\nconnect = {path}\n{SQL_QUERY}")
    return Backend("sqlite", users, _block("sql", ext),
                   "cote 2 threads, dovecot 1 conn")


def _ldap(users: dict[str, str]) -> Backend:
    slapd = SlapdServer().start()
    atexit.register(slapd.cleanup)
    people = f"ou=people,{SUFFIX}"
    entries = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Bench\n"
               f"dc: example\n", f"dn: {people}\nobjectClass: organizationalUnit\nou: people\n"]
    for user, password in users.items():
        entries.append(f"dn: uid={user},{people}\nobjectClass: inetOrgPerson\n"
                       f"objectClass: posixAccount\ncn: {user}\nsn: {user}\nuid: {user}\n"
                       f"uidNumber: 1000\ngidNumber: 1000\nhomeDirectory: /home/{user}\n"
                       f"userPassword: {{PLAIN}}{password}\n")
    slapd.add("\n".join(entries))
    ext = _conf_ext(slapd.dir, f"uris = {slapd.uri}\ndn = {slapd.root_dn}\n"
                               f"dnpass = {slapd.root_pw}\nbase = {SUFFIX}\n"
                               "pass_attrs = uid=user, userPassword=password\n")
    return Backend("ldap", users, _block("ldap", ext),
                   "cote 5 conns, dovecot 1 async")


def _pam(users: dict[str, str]) -> Backend:
    accounts = []
    for password in users.values():
        account = PamUser(password).start()
        atexit.register(account.cleanup)
        accounts.append(account)
    # one PAM service file serves them all (each PamUser wrote the same stack)
    logins = {a.user: a.password for a in accounts}
    return Backend("pam", logins, _block("pam", accounts[0].service),
                   "30 auth-workers")


STARTERS: dict[str, Callable[[dict[str, str]], Backend]] = {
    "pgsql": _pgsql, "mysql": _mysql, "sqlite": _sqlite, "ldap": _ldap, "pam": _pam,
}


def start(name: str, users: dict[str, str]) -> Backend:
    """The backend ``name`` running with ``users`` in it (stopped when the bench exits)."""
    return STARTERS[name](users)
