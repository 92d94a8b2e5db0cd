"""A throwaway Postfix instance on 127.0.0.1 with its own config and queue directories.

Used as a real MTA in front of cote: SMTP in on a free port, delivery to cote over LMTP
(``lmtp_transport``) or through ``mailbox_command`` (cote-lda), SMTP AUTH via
``smtpd_sasl_type = dovecot`` against an auth socket. Every daemon runs unchrooted so paths
are plain.
"""

from __future__ import annotations

import shutil
import smtplib
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.support.env import free_port, remove_dir, server_dir

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"

MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixInstance:
    def __init__(self, main_cf: str = "", *, domain: str = "example.com") -> None:
        self.dir = server_dir("postfix")
        self.port = free_port()
        self.domain = domain
        self.extra = main_cf
        self.config_dir = self.dir / "etc"
        self.log = self.dir / "postfix.log"

    def start(self) -> PostfixInstance:
        self.config_dir.mkdir(exist_ok=True)
        for sub in ("queue", "data"):
            (self.dir / sub).mkdir(exist_ok=True)
        shutil.chown(self.dir / "data", "postfix", "postfix")
        (self.config_dir / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {self.dir}/queue
data_directory = {self.dir}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.{self.domain}
mydomain = {self.domain}
mydestination = {self.domain}, localhost
mynetworks = 127.0.0.0/8
maillog_file_prefixes = {self.dir}
maillog_file = {self.log}
smtputf8_enable = no
biff = no
local_recipient_maps =
alias_maps =
alias_database =
delay_warning_time = 0
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
{self.extra}
""")
        (self.config_dir / "master.cf").write_text(MASTER_CF.format(port=self.port))
        subprocess.run([POSTFIX, "-c", str(self.config_dir), "set-permissions"],
                       capture_output=True, check=False)
        result = subprocess.run([POSTFIX, "-c", str(self.config_dir), "start"],
                                capture_output=True, text=True)
        if result.returncode != 0:
            # Postfix prints its fatal error only to syslog or a terminal: ask again on a pty.
            again = subprocess.run(["script", "-qc", f"{POSTFIX} -c {self.config_dir} start",
                                    "/dev/null"], capture_output=True, text=True)
            raise RuntimeError(f"postfix start failed: {again.stdout}{again.stderr}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                smtplib.SMTP("127.0.0.1", self.port, timeout=1).quit()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"postfix did not listen: {self.log_text()}")

    def private_dir(self) -> Path:
        """queue/private, made ahead of start() so another server can put its socket there
        first (Postfix's smtpd asks a SASL socket for mechanisms as soon as a client connects)."""
        private = self.dir / "queue" / "private"
        private.mkdir(parents=True, exist_ok=True)
        shutil.chown(private, "postfix", "root")
        private.chmod(0o700)
        return private

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def flush(self) -> None:
        subprocess.run([POSTFIX, "-c", str(self.config_dir), "flush"], capture_output=True,
                       check=False)

    def stop(self) -> None:
        subprocess.run([POSTFIX, "-c", str(self.config_dir), "stop"], capture_output=True,
                       check=False)

    def cleanup(self) -> None:
        self.stop()
        remove_dir(self.dir)

    def __enter__(self) -> PostfixInstance:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()
