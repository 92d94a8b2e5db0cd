"""A throwaway PostgreSQL server (initdb + pg_ctl on a free 127.0.0.1 port, trust auth).

Usage::

    with PostgresServer() as pg:
        pg.sql("CREATE TABLE t (x int)")
        connect = pg.connect_string  # "host=127.0.0.1 port=… dbname=postgres user=cote"

``stop()``/``start()`` stop and restart the same cluster (for outage tests); ``cleanup()``
removes it.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from types import TracebackType

from tests.support.env import free_port, remove_dir, server_dir


def _bindir() -> str:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not dirs:
        raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql")
    return dirs[-1]


def postgres_available() -> bool:
    return bool(glob.glob("/usr/lib/postgresql/*/bin/initdb"))


class PostgresServer:
    def __init__(self) -> None:
        self.dir = server_dir("pg")
        self.port = free_port()
        self.bindir = _bindir()
        self.data = self.dir / "data"
        self.initialised = False
        self.connect_string = f"host=127.0.0.1 port={self.port} dbname=postgres user=cote"

    def _pg(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                       capture_output=True, cwd="/")

    def start(self) -> PostgresServer:
        shutil.chown(self.dir, "postgres", "postgres")
        if not self.initialised:
            self._pg(f"{self.bindir}/initdb", "-D", str(self.data), "-U", "cote", "-A", "trust",
                     "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions")
            self.initialised = True
        self._pg(f"{self.bindir}/pg_ctl", "-D", str(self.data), "-l", str(self.dir / "pg.log"),
                 "-w", "-o", f"-k {self.dir} -h 127.0.0.1 -p {self.port} -c fsync=off "
                 f"-c synchronous_commit=off -c full_page_writes=off", "start")
        return self

    def stop(self) -> None:
        if self.initialised and os.path.exists(self.data / "postmaster.pid"):
            self._pg(f"{self.bindir}/pg_ctl", "-D", str(self.data), "-w", "stop", "-m", "fast")

    def sql(self, script: str) -> str:
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "cote",
                              "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qAt"],
                             input=script, capture_output=True, text=True, check=True)
        return out.stdout

    def cleanup(self) -> None:
        self.stop()
        remove_dir(self.dir)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()
