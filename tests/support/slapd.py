"""A throwaway OpenLDAP slapd (mdb database ``dc=example,dc=com``) on a free 127.0.0.1 port.

Usage::

    with SlapdServer() as ldap:
        ldap.add(ldif_text)
        uri = ldap.uri            # ldap://127.0.0.1:PORT
        ldap.root_dn, ldap.root_pw

``stop()``/``start()`` stop and restart the same directory (for outage tests).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from types import TracebackType

from tests.support.env import free_port, remove_dir, server_dir

SUFFIX = "dc=example,dc=com"


def slapd_available() -> bool:
    return shutil.which("slapd") is not None or shutil.which("/usr/sbin/slapd") is not None


def ssha(password: str) -> str:
    out = subprocess.run(["slappasswd", "-h", "{SSHA}", "-s", password], capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


class SlapdServer:
    def __init__(self) -> None:
        self.dir = server_dir("slapd")
        self.port = free_port()
        self.uri = f"ldap://127.0.0.1:{self.port}"
        self.root_dn = f"cn=admin,{SUFFIX}"
        self.root_pw = "secret"
        self.process: subprocess.Popen[bytes] | None = None
        (self.dir / "db").mkdir()
        (self.dir / "slapd.conf").write_text(f"""\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {self.dir}/slapd.pid
database mdb
maxsize 10485760
suffix "{SUFFIX}"
rootdn "{self.root_dn}"
rootpw {self.root_pw}
directory {self.dir}/db
access to attrs=userPassword by anonymous auth by * read
access to * by * read
""")

    def start(self) -> SlapdServer:
        slapd = shutil.which("slapd") or "/usr/sbin/slapd"
        self.process = subprocess.Popen(
            [slapd, "-f", str(self.dir / "slapd.conf"), "-h", f"{self.uri}/", "-d", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while subprocess.run(["ldapsearch", "-x", "-H", self.uri, "-b", "", "-s", "base"],
                             capture_output=True).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("slapd did not start")
            time.sleep(0.05)
        return self

    def add(self, ldif: str) -> None:
        subprocess.run(["ldapadd", "-x", "-H", self.uri, "-D", self.root_dn, "-w", self.root_pw],
                       input=ldif, capture_output=True, text=True, check=True)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        remove_dir(self.dir)

    def __enter__(self) -> SlapdServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()
