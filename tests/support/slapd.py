"""A throwaway OpenLDAP slapd (mdb database ``dc=example,dc=com``) on a free 127.0.0.1 port.

Usage::

    with SlapdServer() as ldap:
        ldap.add(ldif_text)
        uri = ldap.uri            # ldap://127.0.0.1:PORT
        ldap.root_dn, ldap.root_pw

``stop()``/``start()`` stop and restart the same directory (for outage tests).
``SlapdServer(tls=True)`` adds a throwaway CA (``ca_file``), StartTLS and ``ldaps_uri``, and a
client certificate (``client.pem``/``client.key`` in ``dir``) for SASL EXTERNAL binds.
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
    def __init__(self, *, tls: bool = False) -> None:
        self.dir = server_dir("slapd")
        self.port = free_port()
        self.uri = f"ldap://127.0.0.1:{self.port}"
        self.tls_port = free_port() if tls else 0
        self.ldaps_uri = f"ldaps://127.0.0.1:{self.tls_port}" if tls else ""
        self.ca_file = self.dir / "ca.pem"
        tls_conf = ""
        if tls:
            self._make_certs()
            tls_conf = (f"TLSCACertificateFile {self.ca_file}\n"
                        f"TLSCertificateFile {self.dir / 'server.pem'}\n"
                        f"TLSCertificateKeyFile {self.dir / 'server.key'}\n"
                        "TLSVerifyClient allow\n")
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
""".replace("database mdb\n", tls_conf + "database mdb\n"))

    def _make_certs(self) -> None:
        """A CA and a server certificate for 127.0.0.1 (IP SAN), readable by everyone."""
        d = self.dir

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", "/CN=cote test CA", "-keyout", "ca.key", "-out", "ca.pem")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                "-keyout", "server.key", "-out", "server.csr")
        (d / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
        openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=dovecot",
                "-keyout", "client.key", "-out", "client.csr")
        openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-out", "client.pem")
        for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key"):
            (d / name).chmod(0o644)

    def start(self) -> SlapdServer:
        slapd = shutil.which("slapd") or "/usr/sbin/slapd"
        self.process = subprocess.Popen(
            [slapd, "-f", str(self.dir / "slapd.conf"), "-h",
             f"{self.uri}/ {self.ldaps_uri}/" if self.tls_port else f"{self.uri}/", "-d", "0"],
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
