"""``cote``: the master process, started and controlled like ``dovecot``.

    cote [-F] [-c FILE]          start (daemonises unless -F)
    cote [-c FILE] -n | -a       print the configuration (same output as coteconf)
    cote [-c FILE] stop | reload talk to the running master over its control socket
    cote --version
"""

from __future__ import annotations

import getopt
import os
import re
import sys
import time
from collections.abc import Callable, Sequence

from cote.cli import conf
from cote.config import DEFAULT_PATH, ConfigError, load
from cote.master import control, daemon
from cote.master.master import VERSION, Master, StartupError

_setproctitle: Callable[[str], None] | None
try:
    from setproctitle import setproctitle as _setproctitle
except ImportError:  # pragma: no cover - declared dependency
    _setproctitle = None

PROG = "cote"
EX_FATAL = 89
EX_USAGE = 64
USAGE = f"Usage: {PROG} [-F] [-c <config file>] [-n | -a] [--version] [stop | reload]\n"


def _fatal(text: str) -> int:
    sys.stderr.write(f"{PROG}: Fatal: {text}\n")
    return EX_FATAL


def _base_dir(config_path: str) -> str:
    """base_dir of the running master: from the config, or (a config broken since the
    master started must not prevent `cote stop`) its top-level ``base_dir =`` line."""
    try:
        return str(load(config_path).get("base_dir"))
    except (ConfigError, OSError, KeyError):
        pass
    try:
        with open(config_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = re.match(r"base_dir\s*=\s*(\S+)\s*$", line)
                if m:
                    return m.group(1)
    except OSError:
        pass
    return "/run/dovecot"


def _control(config_path: str, cmd: str) -> int:
    base_dir = _base_dir(config_path)
    path = os.path.join(base_dir, "master")
    pid = daemon.read_pid(os.path.join(base_dir, daemon.PID_FILE))
    try:
        reply = control.request(path, cmd)
    except control.ControlError as e:
        if cmd == "stop" and pid is not None:
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                return _fatal(f"cote is not running (stale pid {pid})")
        else:
            return _fatal(f"cote is not running ({e})")
    else:
        if not reply.get("ok"):
            return _fatal(str(reply.get("error", "request failed")))
        pid = int(reply.get("pid", pid or 0)) or pid
    if cmd == "stop" and pid:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return 0
            time.sleep(0.05)
        return _fatal(f"cote (pid {pid}) did not stop in 30 seconds")
    return 0


def _show_config(config_path: str, flag: str) -> int:
    return conf.main(["-c", config_path, flag])


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--version" in args:
        sys.stdout.write(f"{VERSION} (cote)\n")
        return 0
    try:
        opts, rest = getopt.getopt(args, "Fc:naps")
    except getopt.GetoptError as e:
        sys.stderr.write(f"{PROG}: {e}\n{USAGE}")
        return EX_USAGE
    config_path = os.environ.get("DOVECOT_CONFIG", DEFAULT_PATH)
    foreground = False
    show = ""
    for opt, val in opts:
        if opt == "-F":
            foreground = True
        elif opt == "-c":
            config_path = val
        elif opt in ("-n", "-a"):
            show = opt
        # -p (ask for SSL key password) and -s are accepted for compatibility, no effect.
    if show:
        return _show_config(config_path, show)
    if rest:
        if rest[0] in ("stop", "reload") and len(rest) == 1:
            return _control(config_path, rest[0])
        sys.stderr.write(USAGE)
        return EX_USAGE
    return start(config_path, foreground)


def start(config_path: str, foreground: bool) -> int:
    # Import what the service processes need before any fork (warm children).
    master = Master(config_path, load, foreground=foreground)
    try:
        master.prepare()
    except ConfigError as e:
        return _fatal(str(e))
    except (StartupError, OSError) as e:
        return _fatal(str(e))
    if not foreground:
        daemon.daemonize()
    if _setproctitle is not None:
        _setproctitle(f"cote{' -F' if foreground else ''} -c {os.path.abspath(config_path)}")
    return master.run()


if __name__ == "__main__":
    sys.exit(main())
