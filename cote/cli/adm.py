"""``coteadm``: doveadm's admin commands for cote (same flags, output formats and exit codes).

    coteadm [-c FILE] [-o key=value] [-f flow|tab|table|pager|json] <command> ...

    pw [-l] [-s scheme] [-p password] [-u user] [-r rounds] [-t hash] [-V]    (cote.cli.adm_pw)
    auth test|login|lookup|cache flush ..., user [-a socket] [-f field] [-u] <user|mask>...
                                                                          (cote.cli.adm_auth)
    who [-1] [mask] [ip/bits], kick [-f] <mask>, penalty [ip/bits]       (cote.cli.adm_anvil)
    mailbox list|status|create|delete|rename -u user ..., fetch -u user <fields> <query>,
    expunge -u user <query>                       (cote.cli.adm_mail, run as the mail user)
    stop, reload, service status [<service>...], process status [<service>...]  (master)
    log errors|reopen|find

The master commands go over the control socket (``$base_dir/master``) and print padded tables
(one header line, one row per item); the others are checked against Debian's doveadm on the
same config in tests/adm. Output formatters: ``cote.cli.adm_print``.
"""

from __future__ import annotations

import getopt
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

from cote.cli import adm_anvil, adm_auth, adm_mail, adm_pw
from cote.cli.adm_print import FORMATTERS, Output
from cote.cli.master import _base_dir
from cote.config import DEFAULT_PATH, Config, ConfigError, load
from cote.master import control

PROG = "coteadm"
EX_FATAL = 89
EX_USAGE = 64
EX_TEMPFAIL = 75
USAGE = (f"usage: {PROG} [-c <config file>] [-o key=value] [-f <formatter>] <command> [<args>]\n"
         "  pw | auth test|login|lookup|cache flush | user | who | kick | penalty |\n"
         "  mailbox list|status|create|delete|rename | fetch | expunge |\n"
         "  stop | reload | service status | process status | log errors|reopen|find\n")

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


def _master_command(words: list[str], base_dir: str) -> int:
    socket_path = os.path.join(base_dir, "master")
    head = words[:2] if words[0] in ("service", "process") else words[:1]
    names = set(words[len(head):])
    cmd = {("stop",): "stop", ("reload",): "reload", ("service", "status"): "service-status",
           ("process", "status"): "process-status"}.get(tuple(head))
    if cmd is None or (names and cmd in ("stop", "reload")):
        sys.stderr.write(f"{PROG}: Unknown command '{' '.join(words)}'\n{USAGE}")
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


def _log_command(words: list[str], base_dir: str, cfg: Config | None) -> int:
    sub = words[1] if len(words) > 1 else ""
    if sub == "errors":
        return log_errors(os.path.join(base_dir, "log-errors"))
    if sub == "reopen":
        pid_path = os.path.join(base_dir, "master.pid")
        try:
            with open(pid_path, encoding="ascii") as f:
                pid = int(f.read().strip())
            os.kill(pid, signal.SIGUSR1)
        except (OSError, ValueError):
            sys.stderr.write(f"Fatal: Dovecot is not running (read from {pid_path})\n")
            return EX_TEMPFAIL
        return 0
    if sub == "find":
        return log_find(cfg, words[2:])
    sys.stderr.write(f"{PROG}: Unknown command '{' '.join(words)}'\n{USAGE}")
    return EX_USAGE


def log_find(cfg: Config | None, dirs: list[str]) -> int:
    """doveadm log find: print where each log level goes (files of the config)."""
    if cfg is None:
        return EX_TEMPFAIL
    paths = {lvl: str(cfg.get(key)) for lvl, key in (("Debug", "debug_log_path"),
                                                     ("Info", "info_log_path"),
                                                     ("Warning", "log_path"),
                                                     ("Error", "log_path"),
                                                     ("Fatal", "log_path"))}
    main_path = str(cfg.get("log_path"))
    for lvl in ("Debug", "Info"):
        if not paths[lvl]:
            paths[lvl] = main_path
    if main_path == "syslog" or all(p == "syslog" for p in paths.values()):
        sys.stdout.write("Looking for log files from /var/log\n")
        return 0
    for lvl in ("Debug", "Info", "Warning", "Error", "Fatal"):
        sys.stdout.write(f"{lvl}: {paths[lvl]}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        opts, rest = getopt.getopt(args, "+c:o:f:Dvh")
    except getopt.GetoptError as e:
        sys.stderr.write(f"{PROG}: {e}\n{USAGE}")
        return EX_USAGE
    config_path = os.environ.get("DOVECOT_CONFIG", DEFAULT_PATH)
    overrides: dict[str, str] = {}
    formatter: str | None = None
    for opt, val in opts:
        if opt == "-c":
            config_path = val
        elif opt == "-o":
            key, _, value = val.partition("=")
            overrides[key.strip()] = value.strip()
        elif opt == "-f":
            formatter = val
    if not rest:
        sys.stderr.write(USAGE)
        return EX_USAGE
    if formatter is not None and formatter not in FORMATTERS:
        sys.stderr.write(f"{PROG}: Fatal: Unknown print formatter: {formatter}\n")
        return EX_TEMPFAIL
    if rest[0] == "pw":
        return adm_pw.main(rest[1:])
    cfg: Config | None = None
    try:
        cfg = load(config_path)
    except (ConfigError, OSError) as e:
        if rest[0] not in ("stop", "reload", "service", "process", "log"):
            sys.stderr.write(f"Fatal: Error reading configuration: {e}\n")
            return EX_TEMPFAIL
    base_dir = overrides.get("base_dir") or (str(cfg.get("base_dir")) if cfg is not None
                                             else _base_dir(config_path))
    if rest[0] in ("stop", "reload", "service", "process"):
        return _master_command(rest, base_dir)
    if rest[0] == "log":
        return _log_command(rest, base_dir, cfg)
    assert cfg is not None
    out = Output(formatter)
    try:
        rc = _dispatch(rest, cfg, overrides, base_dir, out)
    except KeyboardInterrupt:
        rc = EX_TEMPFAIL
    out.emit()
    return rc


def _dispatch(rest: list[str], cfg: Config, overrides: dict[str, str], base_dir: str,
              out: Output) -> int:
    def cfg_get(key: str) -> str:
        return overrides[key] if key in overrides else str(cfg.get(key))

    head, args = rest[0], rest[1:]
    if head == "auth":
        sub = args[0] if args else ""
        if sub == "test":
            return adm_auth.cmd_auth_test(args[1:], base_dir, out)
        if sub == "login":
            return adm_auth.cmd_auth_login(args[1:], base_dir, out)
        if sub == "lookup":
            return adm_auth.cmd_auth_lookup(args[1:], cfg_get, base_dir, out)
        if sub == "cache" and args[1:2] == ["flush"]:
            return adm_auth.cmd_auth_cache_flush(args[2:], base_dir, out)
    elif head == "user":
        return adm_auth.cmd_user(args, cfg, overrides, base_dir, out)
    elif head == "who":
        return adm_anvil.cmd_who(args, base_dir, out)
    elif head == "kick":
        return adm_anvil.cmd_kick(args, base_dir, out)
    elif head == "penalty":
        return adm_anvil.cmd_penalty(args, base_dir, out)
    elif head in adm_mail.COMMANDS:
        return adm_mail.run(rest, cfg, overrides, base_dir, out)
    sys.stderr.write(f"{PROG}: Unknown command '{' '.join(rest)}'\n{USAGE}")
    return EX_USAGE


if __name__ == "__main__":
    sys.exit(main())
