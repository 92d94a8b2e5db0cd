"""The master's control socket (``$base_dir/master``): line-framed JSON, one request per line.

Requests and replies (each one JSON object on one line)::

    {"cmd": "stop"}            -> {"ok": true}
    {"cmd": "reload"}          -> {"ok": true} | {"ok": false, "error": "<config error>"}
    {"cmd": "service-status"}  -> {"ok": true, "services": [{name, process_count,
                                   process_avail, process_limit, client_limit,
                                   process_min_avail, throttle_secs, listening,
                                   listeners: ["imap 127.0.0.1:143", ...], implemented}]}
    {"cmd": "process-status"}  -> {"ok": true, "processes": [{service, pid, uid,
                                   available_count, client_limit, idle_secs, age_secs,
                                   generation, retired}]}
    {"cmd": "ping"}            -> {"ok": true, "pid": <master pid>}

The socket is 0600 root (as Dovecot's), so only root (or the user running the master) can use
it. ``request()`` is the client used by ``cote stop/reload`` and ``coteadm``.
"""

from __future__ import annotations

import json
import socket
from typing import Any

MAX_LINE = 65536


class ControlError(Exception):
    pass


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    obj = json.loads(line)
    if not isinstance(obj, dict):
        raise ValueError("request is not a JSON object")
    return obj


def request(path: str, cmd: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
    """Send one request to a running master and return its reply."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except OSError as e:
            raise ControlError(f"connect({path}) failed: {e.strerror}") from None
        sock.sendall(encode({"cmd": cmd, **args}))
        buf = b""
        while b"\n" not in buf:
            chunk = sock.recv(MAX_LINE)
            if not chunk:
                break
            buf += chunk
        if not buf:
            raise ControlError("master closed the connection without a reply")
        return decode(buf.split(b"\n", 1)[0])
    except (OSError, ValueError) as e:
        raise ControlError(f"control socket {path}: {e}") from None
    finally:
        sock.close()
