"""Run a quota warning the way Dovecot does: ask a ``script`` service over its UNIX socket.

``quota_warning = storage=95%% quota-warning 95 %u``: the first word names the service's
listener (``$base_dir/quota-warning``; an absolute path is used as is), the rest are arguments.
The request is Dovecot's script protocol: ``VERSION\\tscript\\t4\\t0``, ``noreply``, one line
per argument, an empty line; the service runs its program with those arguments. A warning
that cannot be delivered is logged, never an error for the mail being saved.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence

log = logging.getLogger("cote.storage")

CONNECT_TIMEOUT = 1.0


def _escape(arg: str) -> str:
    """Dovecot's tab-escaping of one argument (``\\x01`` prefix escapes)."""
    return (arg.replace("\x01", "\x011").replace("\x00", "\x010").replace("\t", "\x01t")
            .replace("\r", "\x01r").replace("\n", "\x01n"))


def request(args: Sequence[str]) -> bytes:
    lines = ["VERSION\tscript\t4\t0", "noreply", *(_escape(a) for a in args), "", ""]
    return "\n".join(lines).encode()


def socket_path(command: str, base_dir: str) -> str:
    return command if command.startswith("/") else os.path.join(base_dir, command)


def send_warning(command: Sequence[str], base_dir: str) -> bool:
    """Connect to the script service named by ``command[0]`` and hand over the arguments."""
    if not command:
        return False
    path = socket_path(command[0], base_dir)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(CONNECT_TIMEOUT)
        s.connect(path)
        s.settimeout(None)
        s.sendall(request(command[1:]))
        s.shutdown(socket.SHUT_WR)
    except OSError as e:
        log.error("quota: warning %s: connect(%s) failed: %s", command[0], path, e)
        return False
    finally:
        s.close()
    return True
