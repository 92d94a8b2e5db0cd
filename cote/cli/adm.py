"""``coteadm``: administer a running cote (doveadm's master commands, over the control socket).

    coteadm [-c FILE] stop
    coteadm [-c FILE] reload
    coteadm [-c FILE] service status [<service> ...]
    coteadm [-c FILE] process status [<service> ...]
    coteadm [-c FILE] log errors          (recent warnings and errors kept by the log service)

Tables are printed like doveadm's: a header line, then one row per item, columns separated by
spaces and padded.
"""

from __future__ import annotations

import getopt
import os
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

from cote.cli.master import _base_dir
from cote.config import DEFAULT_PATH
from cote.master import control

PROG = "coteadm"
EX_FATAL = 89
EX_USAGE = 64
EX_TEMPFAIL = 75
USAGE = (f"usage: {PROG} [-c <config file>] stop | reload | service status [<service>...] | "
         "process status [<service>...] | log errors\n")

SERVICE_COLUMNS = ("name", "process_count", "process_avail", "process_limit", "client_limit",
                   "process_min_avail", "throttle_secs", "listening")
PROCESS_COLUMNS = ("service", "pid", "uid", "available_count", "client_limit", "idle_secs",
                   "age_secs", "generation", "retired")


def table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [list(columns)] + [[_cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "".join(" ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n"
                   for row in cells)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "y" if value else "n"
    return str(value)


def log_errors(path: str) -> int:
    """Print the log service's recent warnings/errors as log lines (doveadm log errors)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    try:
        sock.connect(path)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    except OSError as e:
        sys.stderr.write(f"{PROG}: Error: connect({path}) failed: {e.strerror or e}\n")
        return EX_TEMPFAIL
    finally:
        sock.close()
    for line in data.decode("utf-8", "replace").splitlines():
        stamp, _, rest = line.partition("\t")
        prefix, _, text = rest.partition("\t")
        when = time.strftime("%b %d %H:%M:%S", time.localtime(int(stamp))) if stamp.isdigit() \
            else stamp
        sys.stdout.write(f"{when} {prefix}{text}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        opts, rest = getopt.getopt(args, "c:")
    except getopt.GetoptError as e:
        sys.stderr.write(f"{PROG}: {e}\n{USAGE}")
        return EX_USAGE
    config_path = os.environ.get("DOVECOT_CONFIG", DEFAULT_PATH)
    for opt, val in opts:
        if opt == "-c":
            config_path = val
    if not rest:
        sys.stderr.write(USAGE)
        return EX_USAGE
    base_dir = _base_dir(config_path)
    if rest == ["log", "errors"]:
        return log_errors(os.path.join(base_dir, "log-errors"))
    socket_path = os.path.join(base_dir, "master")
    words = rest[:2] if rest[0] in ("service", "process") else rest[:1]
    names = set(rest[len(words):])
    cmd = {("stop",): "stop", ("reload",): "reload", ("service", "status"): "service-status",
           ("process", "status"): "process-status"}.get(tuple(words))
    if cmd is None or (names and cmd in ("stop", "reload")):
        sys.stderr.write(f"{PROG}: Unknown command '{' '.join(rest)}'\n{USAGE}")
        return EX_USAGE
    try:
        reply = control.request(socket_path, cmd)
    except control.ControlError as e:
        sys.stderr.write(f"{PROG}: Error: {e}\n")
        return EX_TEMPFAIL
    if not reply.get("ok"):
        sys.stderr.write(f"{PROG}: Error: {reply.get('error', 'failed')}\n")
        return EX_FATAL
    if cmd == "service-status":
        rows = [s for s in reply["services"] if not names or s["name"] in names]
        sys.stdout.write(table(rows, SERVICE_COLUMNS))
    elif cmd == "process-status":
        rows = [p for p in reply["processes"] if not names or p["service"] in names]
        sys.stdout.write(table(rows, PROCESS_COLUMNS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
