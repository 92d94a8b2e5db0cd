"""The auth cache against Dovecot's: an SQL passdb (SQLite) with auth_cache_size set.

Both servers get their own copy of the same database and the same steps: logins cached,
the password changed and a user added in the database, CACHE-FLUSH. Every answer (and the
flush count) must be Dovecot's: a cached old password keeps working until a login with a
password the cache does not know looks the user up again; unknown users are cached too.
passwd-file (also in the chain, first) is never cached, as in Dovecot.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from tests.authd.test_daemon_vs_dovecot import LineClient, b64, client_handshake
from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle
from tests.support.env import remove_dir, server_dir

CACHE = "auth_cache_size = 1M\nauth_cache_ttl = 1 hour\nauth_cache_negative_ttl = 1 hour\n"


def make_db(directory: Path) -> tuple[Path, str]:
    db = directory / "users.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE users (username TEXT, password TEXT)")
    con.execute("INSERT INTO users VALUES ('u', '{PLAIN}old')")
    con.commit()
    con.close()
    os.chmod(db, 0o666)
    conf = directory / "sql.conf.ext"
    conf.write_text(f"driver = sqlite\nconnect = {db}\n"
                    "password_query = SELECT username AS user, password FROM users "
                    "WHERE username = '%u'\n")
    passdb = f"passdb {{\n  driver = sql\n  args = {conf}\n}}\n"
    return db, CACHE + passdb


def sql(db: Path, statement: str) -> None:
    con = sqlite3.connect(db)
    con.execute(statement)
    con.commit()
    con.close()


def auth(path: str, user: str, password: str) -> str:
    c, _ = client_handshake(path)
    c.send("AUTH", "1", "PLAIN", "service=imap", "secured", "resp=" + b64(f"\0{user}\0{password}".encode()))
    reply = c.line()
    c.close()
    return reply


def flush(path: str) -> str:
    m = LineClient(path)
    m.send("VERSION", "1", "0")
    m.line()
    m.line()
    m.send("CACHE-FLUSH", "9")
    reply = m.line()
    m.close()
    return reply


def run_steps(client: str, master: str, db: Path) -> list[str]:
    out = [auth(client, "u", "old"), auth(client, "ghost", "x")]
    sql(db, "UPDATE users SET password = '{PLAIN}new' WHERE username = 'u'")
    sql(db, "INSERT INTO users VALUES ('ghost', '{PLAIN}x')")
    out += [auth(client, "u", "old"), auth(client, "u", "new"), auth(client, "u", "old"),
            auth(client, "ghost", "x"), flush(master), auth(client, "ghost", "x"),
            auth(client, "u", "old")]
    return out


def test_auth_cache_behaves_like_dovecots() -> None:
    d_dir, c_dir = server_dir("cache-dovecot-db"), server_dir("cache-cote-db")
    d_db, d_conf = make_db(d_dir)
    c_db, c_conf = make_db(c_dir)
    dc = DovecotOracle(users={"zzz": "x"}, extra_conf=d_conf + "auth_failure_delay = 0\n")
    cote = CoteServer(mail_location=f"maildir:{d_dir}/mail/%u", passwd_file=dc.dir / "users",
                      protocols="lmtp", extra_conf=c_conf + "auth_failure_delay = 0\n")
    try:
        dc.start()
        cote.start()
        theirs = run_steps(str(dc.base_dir / "auth-client"), str(dc.base_dir / "auth-master"),
                           d_db)
        ours = run_steps(str(cote.socket_path("auth-client")),
                         str(cote.socket_path("auth-master")), c_db)
        assert ours == theirs
        assert theirs[2].startswith("OK") and theirs[4].startswith("FAIL")  # the cache's effect
    finally:
        cote.cleanup()
        dc.cleanup()
        remove_dir(d_dir)
        remove_dir(c_dir)
