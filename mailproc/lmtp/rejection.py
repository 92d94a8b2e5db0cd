"""The rejection mail dovecot-lda sends when it refuses a message (quota full) without ``-e``.

The MTA gets exit code 0 and the sender gets a ``multipart/report`` (delivery-status) from
``Postmaster <postmaster_address>`` through ``sendmail_path -i -f <> -- <sender>``; the texts
come from ``rejection_subject`` and ``rejection_reason``. No mail goes to a null sender or in
answer to an auto-submitted message (as Dovecot: the message is then dropped, still exit 0).
"""

from __future__ import annotations

import email.utils
import os
import shlex
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cote.config import Config
from cote.variables import VariableError, compile_template, user_values

_counter = [0]


def recipient_address(cfg: Config, user: str) -> str:
    """The refused recipient when no ``-a`` names it: the user, with ``@hostname`` added to a
    name without a domain (as dovecot-lda)."""
    return user if "@" in user else f"{user}@{str(cfg.get('hostname')) or socket.gethostname()}"


@dataclass(frozen=True, slots=True)
class Rejection:
    sender: str  # where the rejection goes (the envelope sender)
    recipient: str  # the recipient the message was refused for (-a, else the user)
    user: str
    reason: str
    status: str = "5.2.2"


def postmaster_address(cfg: Config, user: str) -> str:
    """``postmaster_address`` expanded for ``user`` (default ``postmaster@<domain or host>``)."""
    template = str(cfg.get("postmaster_address"))
    try:
        return compile_template(template).expand(
            {**user_values(user), "hostname": socket.gethostname()})
    except VariableError:
        return template


def _expand(template: str, values: dict[str, str | None]) -> str:
    try:
        return compile_template(template).expand(values)
    except VariableError:
        return template


def auto_submitted(fields: Sequence[tuple[bytes, bytes]]) -> bool:
    value = next((v for k, v in fields if k.lower() == b"auto-submitted"), None)
    return value is not None and value.strip().lower() != b"no"


def build(cfg: Config, r: Rejection, header: bytes, subject: str,
          now: float | None = None) -> bytes:
    """The rejection message, CRLF line ends, ``header`` being the refused message's header
    block (its body is left out, as Dovecot's)."""
    now = time.time() if now is None else now
    host = socket.gethostname()
    reporting = str(cfg.get("hostname")) or host
    _counter[0] += 1
    usecs = int(now * 1_000_000) % 1_000_000
    boundary = f"{os.getpid()}/{reporting}"
    values: dict[str, str | None] = {"n": "\r\n", "r": r.reason, "s": subject,
                                     "t": r.recipient}
    lines = [
        f"Message-ID: <dovecot-{int(now)}-{usecs}-{_counter[0] - 1}@{host}>",
        f"Date: {email.utils.formatdate(now, localtime=True)}",
        f"From: Postmaster <{postmaster_address(cfg, r.user)}>",
        f"To: <{r.sender}>",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
        f"Subject: {_expand(str(cfg.get('rejection_subject')), values)}",
        "Auto-Submitted: auto-replied (rejected)",
        "Precedence: bulk",
        "",
        "This is a MIME-encapsulated message",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Disposition: inline",
        "Content-Transfer-Encoding: 8bit",
        "",
        _expand(str(cfg.get("rejection_reason")), values),
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {reporting}",
        f"Final-Recipient: rfc822; {r.recipient}",
        "Action: failed",
        f"Status: {r.status}",
        "",
        f"--{boundary}",
        "Content-Type: message/rfc822",
        "",
    ]
    head = "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n"
    # The refused header as stored (LF line ends, as Dovecot's header filter gives it).
    original = header.replace(b"\r\n", b"\n").rstrip(b"\n") + b"\n\n"
    return head + original + f"\r\n\r\n--{boundary}--\r\n".encode()


def send(cfg: Config, r: Rejection, message: bytes) -> bool:
    """Hand the rejection to ``sendmail_path``; False when it could not be sent."""
    command = [*shlex.split(str(cfg.get("sendmail_path"))), "-i", "-f", "<>", "--", r.sender]
    try:
        result = subprocess.run(command, input=message, stdout=subprocess.DEVNULL,
                                timeout=60, check=False)  # its stderr is ours, as Dovecot
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


__all__ = ["Rejection", "auto_submitted", "build", "postmaster_address", "recipient_address",
           "send"]
