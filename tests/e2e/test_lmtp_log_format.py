"""deliver_log_format with every variable Dovecot 2.3 offers, short and long names, against
Dovecot's LMTP and dovecot-lda: the log lines after the ``lmtp(user)<pid><session>:`` prefix
must be equal."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path

from tests.e2e.test_lda import COTE_LDA, DOVECOT_LDA
from tests.e2e.test_lmtp_delivery import converse
from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle

FORMAT = ("from=%f, subj=%s, size=%p, vsize=%w, env=%e, msgid=%m, "
          "long=%{msgid}/%{subject}/%{from}/%{from_envelope}/%{size}/%{vsize}: %$")
CONF = f"deliver_log_format = {FORMAT}\n"
MESSAGE = (b"From: =?utf-8?q?J=C3=B6rg?= <j@x.example>\r\n"
           b"Subject: =?utf-8?q?h=C3=A9llo?= world\r\nMessage-ID: <fmt@x>\r\n\r\n"
           b"body\r\n..dot\r\nlast\r\n")
PREFIX = re.compile(r"^.*?(lmtp|lda)\(user1\)<\d+><[^>]+>: Info: ")


def lines(path: Path, service: str, count: int) -> list[str]:
    deadline = time.monotonic() + 5
    found: list[str] = []
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        found = [PREFIX.sub("", x) for x in text.splitlines() if f"{service}(user1)<" in x]
        if len(found) >= count:
            break
        time.sleep(0.05)
    return found


def test_log_format_variables_match_dovecot() -> None:
    with DovecotOracle(users={"user1": "x"}, extra_conf=CONF) as dc:
        cote = CoteServer(mail_location=f"maildir:{dc.dir}/mail/%u",
                          passwd_file=dc.dir / "users", protocols="lmtp", extra_conf=CONF)
        try:
            cote.start()
            transaction = [b"LHLO c\r\nMAIL FROM:<env@x>\r\nRCPT TO:<user1>\r\nDATA\r\n",
                           MESSAGE + b".\r\n", b"QUIT\r\n"]
            for port in (dc.ports["lmtp"], cote.ports["lmtp"]):
                converse(socket.create_connection(("127.0.0.1", port)), transaction)
            theirs, ours = lines(dc.log_path, "lmtp", 1), lines(cote.log_path, "lmtp", 1)
            assert theirs and ours == theirs
            assert "from=j@x.example, subj=héllo world" in theirs[0]
            for program in (DOVECOT_LDA, COTE_LDA):
                result = subprocess.run([program, "-c", str(dc.config_path), "-d", "user1",
                                         "-f", "env@x"], input=MESSAGE.replace(b"..", b"."),
                                        capture_output=True, timeout=30)
                assert result.returncode == 0, result.stderr
            ldas = lines(dc.log_path, "lda", 2)
            assert len(ldas) == 2 and ldas[0] == ldas[1]
        finally:
            cote.cleanup()
