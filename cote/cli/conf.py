"""``coteconf``: cote's ``doveconf`` — print and check the configuration (same flags, output
and exit status as Dovecot 2.3's doveconf, so admin scripts and habits keep working)."""

from __future__ import annotations

import getopt
import os
import platform
import sys
from collections.abc import Sequence

from cote import DOVECOT_COMPAT_VERSION, __version__
from cote.config import DEFAULT_PATH, Config, ConfigError, check, parse, schema
from cote.config.dump import Dumper, DumpOptions, escape_name
from cote.config.model import Section

EX_FATAL = 89          # doveconf's exit status for a fatal (configuration) error
EX_USAGE = 64
PROG = "coteconf"

USAGE = (f"Usage: {PROG} [-adnNPSx] [-c <config path>] [-f <filter>] [-h] "
         "[<setting name> ...]\n")

FILTER_KEYS = {"protocol": "protocol", "service": "protocol", "local": "local_ip",
               "lip": "local_ip", "remote": "remote_ip", "rip": "remote_ip",
               "local_name": "local_name", "lname": "local_name"}


def _fatal(message: str) -> int:
    sys.stderr.write(f"{PROG}: Fatal: {message}\n")
    return EX_FATAL


def _header(path: str, *, all_: bool) -> list[str]:
    uname = platform.uname()
    lines = [f"# {DOVECOT_COMPAT_VERSION} (cote {__version__}): {path}",
             f"# OS: {uname.system} {uname.release} {uname.machine}"]
    if all_:
        lines.append(f"# NOTE: Send {PROG} -n output instead when asking for help.")
    return lines


def _simple(cfg: Config, dumper: Dumper) -> list[str]:
    """-S: one ``path=value`` line per setting, with doveconf's list headers and paths."""
    out = []
    for key in schema.GLOBAL:
        if key not in schema.HIDDEN:
            out.append(f"{key}={dumper.raw_global(key)}")
    if cfg.plugin_settings():
        out.append("plugin=")
    for key, s in sorted(cfg.plugin_settings().items()):
        out.append(f"plugin/{key}={s.text}")
    for d in cfg.sections("dict"):
        out.append("dict=")
        for key, s in sorted(d.settings().items()):
            out.append(f"dict/{key}={s.text}")
    for kind in ("service", "namespace", "passdb", "userdb", "metric", "event_exporter"):
        out.extend(_simple_list(cfg.sections(kind), kind, dumper))
    return out


def _simple_list(sections: list[Section], prefix: str, dumper: Dumper) -> list[str]:
    if not sections:
        return []
    ids = [escape_name(sec.name) if sec.name else str(i) for i, sec in enumerate(sections)]
    out = [f"{prefix}={' '.join(ids)}"]
    for ident, sec in zip(ids, sections, strict=True):
        base = f"{prefix}/{ident}"
        keys = sec.setting_names()
        if "name" not in keys:
            # unix/fifo listeners are named by their path, the rest by a name
            label = "path" if sec.kind in ("unix_listener", "fifo_listener") else "name"
            out.append(f"{base}/{label}={sec.name}")
        for key in keys:
            out.append(f"{base}/{key}={dumper._raw(sec.setting(key), sec.default_text(key))}")
        kinds = dict.fromkeys(child.kind for child in sec.all_children())
        for kind in kinds:
            out.extend(_simple_list(sec.sections(kind), f"{base}/{kind}", dumper))
    return out


def _check_error(cfg: Config) -> ConfigError | None:
    try:
        check(cfg)
    except ConfigError as e:
        return e
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        opts, keys = getopt.getopt(args, "ac:df:hm:nNPSxCI")
    except getopt.GetoptError as e:
        sys.stderr.write(f"{PROG}: {e}\n{USAGE}")
        return EX_USAGE
    path = os.environ.get("DOVECOT_CONFIG", DEFAULT_PATH)
    mode = "a"
    hide_key = False
    simple = False
    dump = DumpOptions()
    filters: dict[str, str] = {}
    for opt, val in opts:
        if opt == "-a":
            mode = "a"
        elif opt in {"-n", "-N"}:
            mode = "n"
        elif opt == "-c":
            path = val
        elif opt == "-h":
            hide_key = True
        elif opt == "-P":
            dump.show_secrets = True
        elif opt == "-x":
            dump.expand = True
        elif opt == "-S":
            simple = True
        elif opt == "-f":
            name, eq, value = val.partition("=")
            if not eq or name not in FILTER_KEYS:
                return _fatal(f"Unknown filter argument: {val}")
            filters[FILTER_KEYS[name]] = value
        # -d -m -C -I only select output details doveconf offers; accepted and ignored.
    if hide_key and not keys:
        sys.stderr.write(f"{PROG}: -h needs a setting name\n{USAGE}")
        return EX_USAGE
    try:
        cfg, deferred = parse(path, strict=dump.expand, checks=False)
    except ConfigError as e:
        out: list[str] = []
        if not keys and not simple:
            out = _header(path, all_=mode == "a")
        sys.stdout.write("".join(line + "\n" for line in out))
        sys.stdout.flush()
        return _fatal(str(e))
    late = None if keys else _check_error(cfg)
    dump.omit_dynamic = (any(e.message.startswith("Unknown variable") for e in deferred)
                         or (late is not None and late.in_managesieve))
    for w in cfg.warnings:
        sys.stderr.write(f"{PROG}: Warning: {w}\n")
    dump.all = mode == "a"
    view = cfg
    shown = None
    if filters:
        # The winning values show as global settings, followed by the filter blocks the
        # given (possibly partial) criteria do not rule out.
        shown = cfg.filters_compatible(**filters)
        if keys:
            try:
                view = cfg.lookup(**filters)
            except ConfigError as e:
                sys.stderr.write(f"{PROG}: Error: {e}\n")
                return _fatal("Errors in configuration")
        else:
            view = cfg.lookup_lenient(**filters)
    dumper = Dumper(view, dump, shown)
    if keys:
        for key in keys:
            lines = dumper.value_of(key)
            if lines is None:
                continue  # doveconf prints nothing for an unknown name (and exits 0)
            if hide_key or len(lines) != 1 or ("/" in key and lines[0].endswith("{")):
                # a value read from a <file keeps its own final newline
                sys.stdout.write("".join(line if line.endswith("\n") else line + "\n"
                                         for line in lines))
            else:
                sys.stdout.write(f"{key} = {lines[0]}\n")
        return 0  # like doveconf, -h does not run the whole-config checks
    if simple:
        sys.stdout.write("".join(line + "\n" for line in _simple(view, dumper)))
        sys.stdout.flush()
        return _fatal(str(late)) if late is not None else 0
    out = _header(path, all_=mode == "a")
    out.extend(dumper.lines())
    sys.stdout.write("".join(line + "\n" for line in out))
    sys.stdout.flush()
    # like doveconf: the dump first, then the whole-config problem (exit 89)
    return _fatal(str(late)) if late is not None else 0


if __name__ == "__main__":
    sys.exit(main())
