"""A throwaway MariaDB server (mariadb-install-db + mariadbd on a free 127.0.0.1 port).

Usage::

    with MariadbServer() as db:
        db.sql("CREATE TABLE t (x int)")       # in database ``cote``
        connect = db.connect_string            # "host=127.0.0.1 port=… dbname=cote user=cote …"

``stop()``/``start()`` stop and restart the same server (for outage tests).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from types import TracebackType

from tests.support.env import free_port, remove_dir, server_dir

PASSWORD = "cote-db-pw"


def mariadb_available() -> bool:
    return shutil.which("mariadbd") is not None or shutil.which("mysqld") is not None


class MariadbServer:
    def __init__(self) -> None:
        self.dir = server_dir("mariadb")
        self.port = free_port()
        self.socket = self.dir / "mysql.sock"
        self.process: subprocess.Popen[bytes] | None = None
        self.initialised = False
        self.connect_string = (f"host=127.0.0.1 port={self.port} dbname=cote user=cote "
                               f"password={PASSWORD}")

    def start(self) -> MariadbServer:
        shutil.chown(self.dir, "mysql", "mysql")
        if not self.initialised:
            subprocess.run(["mariadb-install-db", "--no-defaults", "--user=mysql",
                            f"--datadir={self.dir}/data", "--auth-root-authentication-method=socket",
                            "--skip-test-db", "--skip-name-resolve"], check=True,
                           capture_output=True)
        server = shutil.which("mariadbd") or "mysqld"
        self.process = subprocess.Popen(
            [server, "--no-defaults", "--user=mysql", f"--datadir={self.dir}/data",
             f"--socket={self.socket}", f"--pid-file={self.dir}/mysqld.pid",
             f"--port={self.port}", "--bind-address=127.0.0.1", "--skip-name-resolve",
             f"--log-error={self.dir}/error.log", "--innodb-flush-log-at-trx-commit=0",
             "--innodb-buffer-pool-size=64M", "--skip-log-bin"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while subprocess.run(["mariadb-admin", "--no-defaults", "-S", str(self.socket), "-uroot",
                              "ping"], capture_output=True).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.dir / "error.log").read_text(errors="replace")
                raise RuntimeError(f"mariadbd did not start:\n{log}")
            time.sleep(0.05)
        if not self.initialised:
            self.root_sql(f"CREATE DATABASE cote; CREATE USER 'cote'@'127.0.0.1' IDENTIFIED BY "
                          f"'{PASSWORD}'; GRANT ALL ON cote.* TO 'cote'@'127.0.0.1';")
            self.initialised = True
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def root_sql(self, script: str, database: str = "") -> str:
        args = ["mariadb", "--no-defaults", "-S", str(self.socket), "-uroot", "-N", "-B"]
        out = subprocess.run([*args, database] if database else args, input=script,
                             capture_output=True, text=True, check=True)
        return out.stdout

    def sql(self, script: str) -> str:
        return self.root_sql(script, "cote")

    def cleanup(self) -> None:
        self.stop()
        remove_dir(self.dir)

    def __enter__(self) -> MariadbServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()
