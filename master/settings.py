"""The master's view of the config: resolved, typed service and listener specifications.

cote.config gives settings with Dovecot's meaning (``process_limit = 0`` means the default,
``$default_internal_user`` references, the 2^64-1 "unset" vsz_limit...). This module resolves
all of that once per (re)load into plain dataclasses the supervisor works from, so nothing
downstream needs to know Dovecot's special values.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

UNSET_SIZE = 2**64 - 1
UNSET_TIME = 4294967295.0

# Services cote implements itself or through the other packages (see registry.py); Dovecot's
# other built-in services are skipped quietly (cote has no config/stats/dict/... processes).
DOVECOT_ONLY_SERVICES = frozenset({
    "config", "dict", "dict-async", "stats", "old-stats", "doveadm", "indexer",
    "indexer-worker", "replicator", "aggregator", "director", "imap-urlauth",
    "imap-urlauth-login", "imap-urlauth-worker", "ipc", "dns-client",
    "submission", "submission-login", "health-check", "tcpwrap", "ssl-params",
})


class SettingsError(Exception):
    """A service setting that cannot be honoured (unknown user, bad value)."""


@dataclass(frozen=True)
class ListenerSpec:
    kind: str              # "inet" | "unix" | "fifo"
    name: str              # section name ("imap", "login/imap", "/var/spool/postfix/private/auth")
    # inet
    address: str = ""      # one address ("*", "::", "127.0.0.1")
    port: int = 0
    ssl: bool = False
    haproxy: bool = False
    reuse_port: bool = False
    # unix / fifo
    path: str = ""         # absolute path
    mode: int = 0o600
    user: str = ""
    group: str = ""

    def key(self) -> tuple[str, str, int]:
        """Identity of the bound socket: equal keys reuse the socket over a reload."""
        if self.kind == "inet":
            return ("inet", self.address, self.port)
        return (self.kind, self.path, 0)


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    executable: tuple[str, ...]
    type: str = ""
    protocol: str = ""
    user: str = ""
    group: str = ""
    extra_groups: tuple[str, ...] = ()
    chroot: str = ""
    process_min_avail: int = 0
    process_limit: int = 100
    client_limit: int = 1000
    service_count: int = 0
    idle_kill: float = 60.0     # 0 = never
    vsz_limit: int = 0          # bytes, 0 = unlimited
    listeners: tuple[ListenerSpec, ...] = ()

    def describe(self) -> str:
        return f"service({self.name})"


@dataclass
class MasterSettings:
    base_dir: str
    instance_name: str
    protocols: frozenset[str]
    protocol_order: tuple[str, ...]
    log_path: str
    info_log_path: str
    debug_log_path: str
    syslog_facility: str
    log_timestamp: str
    shutdown_clients: bool
    default_internal_user: str
    default_login_user: str
    environment: dict[str, str] = field(default_factory=dict)  # import_environment
    services: list[ServiceSpec] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # Dovecot-only services not started


def _get(obj: Any, key: str, default: Any = "") -> Any:
    try:
        return obj.get(key)
    except KeyError:
        return default


def unquote(value: Any) -> str:
    """doveconf prints values with spaces quoted (``"%b %d %H:%M:%S "``): the value inside."""
    text = str(value)
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text


def _resolve(cfg: Any, value: Any) -> Any:
    """``$name`` references (as doveconf prints them) resolved against the global settings."""
    depth = 0
    while isinstance(value, str) and value.startswith("$") and depth < 5:
        value = _get(cfg, value[1:], "")
        depth += 1
    return value


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_TIME_UNITS = {"": 1.0, "ms": 0.001, "msec": 0.001, "msecs": 0.001, "s": 1.0, "sec": 1.0,
               "secs": 1.0, "second": 1.0, "seconds": 1.0, "m": 60.0, "min": 60.0,
               "mins": 60.0, "minute": 60.0, "minutes": 60.0, "h": 3600.0, "hour": 3600.0,
               "hours": 3600.0, "d": 86400.0, "day": 86400.0, "days": 86400.0,
               "w": 604800.0, "week": 604800.0, "weeks": 604800.0}


def as_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip()
    if text.startswith("0") and len(text) > 1 and text.isdigit():
        return int(text, 8)
    return int(text or 0)


def as_size(value: Any) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]?)[bB]?\s*", str(value))
    if not m:
        raise SettingsError(f"invalid size: {value}")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]


def as_time(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", str(value))
    if not m or m.group(2).lower() not in _TIME_UNITS:
        raise SettingsError(f"invalid time: {value}")
    return int(m.group(1)) * _TIME_UNITS[m.group(2).lower()]


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("yes", "y", "1", "true")


def listen_addresses(value: str) -> list[str]:
    return [a.strip() for a in str(value).replace(",", " ").split() if a.strip()]


def abs_path(base_dir: str, path: str) -> str:
    return path if path.startswith("/") else os.path.join(base_dir, path)


def build_listeners(cfg: Any, section: Any, base_dir: str) -> list[ListenerSpec]:
    out: list[ListenerSpec] = []
    global_listen = str(_get(cfg, "listen", "*, ::"))
    for lst in section.sections("inet_listener"):
        port = as_int(_get(lst, "port", 0))
        if port == 0:
            continue  # port = 0 disables the listener
        address = str(_resolve(cfg, _get(lst, "address", "")) or "") or global_listen
        for addr in listen_addresses(address):
            out.append(ListenerSpec(
                kind="inet", name=lst.name, address=addr, port=port,
                ssl=as_bool(_get(lst, "ssl", False)), haproxy=as_bool(_get(lst, "haproxy", False)),
                reuse_port=as_bool(_get(lst, "reuse_port", False))))
    for kind in ("unix", "fifo"):
        for lst in section.sections(f"{kind}_listener"):
            if not lst.name:
                continue
            out.append(ListenerSpec(
                kind=kind, name=lst.name, path=abs_path(base_dir, lst.name),
                mode=as_int(_get(lst, "mode", 0o600)),
                user=str(_resolve(cfg, _get(lst, "user", "")) or ""),
                group=str(_resolve(cfg, _get(lst, "group", "")) or "")))
    return out


def build(cfg: Any) -> MasterSettings:
    """Resolve a loaded cote.config.Config into MasterSettings. Raises SettingsError."""
    base_dir = str(_get(cfg, "base_dir", "/run/dovecot")) or "/run/dovecot"
    order = tuple(dict.fromkeys(p for p in str(_get(cfg, "protocols", "")).split()
                                if p != "none"))
    protocols = frozenset(order)
    ms = MasterSettings(
        base_dir=base_dir,
        instance_name=str(_get(cfg, "instance_name", "dovecot")),
        protocols=protocols,
        protocol_order=order,
        log_path=str(_get(cfg, "log_path", "syslog")),
        info_log_path=str(_get(cfg, "info_log_path", "")),
        debug_log_path=str(_get(cfg, "debug_log_path", "")),
        syslog_facility=str(_get(cfg, "syslog_facility", "mail")),
        log_timestamp=unquote(_get(cfg, "log_timestamp", "%b %d %H:%M:%S ")),
        shutdown_clients=as_bool(_get(cfg, "shutdown_clients", True)),
        default_internal_user=str(_get(cfg, "default_internal_user", "dovecot")),
        default_login_user=str(_get(cfg, "default_login_user", "dovenull")),
    )
    ms.environment = import_environment(
        str(_get(cfg, "import_environment", "TZ CORE_OUTOFMEM CORE_ERROR")))
    default_process_limit = as_int(_get(cfg, "default_process_limit", 100))
    default_client_limit = as_int(_get(cfg, "default_client_limit", 1000))
    default_vsz = as_size(_resolve(cfg, _get(cfg, "default_vsz_limit", 256 * 1024**2)))
    default_idle = as_time(_get(cfg, "default_idle_kill", 60.0))
    for section in cfg.sections("service"):
        name = section.name
        protocol = str(_get(section, "protocol", ""))
        if protocol and protocol not in protocols:
            continue  # enabled only when its protocol is listed in `protocols`
        if name in DOVECOT_ONLY_SERVICES:
            ms.skipped.append(name)
            continue
        executable = tuple(shlex.split(str(_get(section, "executable", "")) or name))
        process_limit = as_int(_get(section, "process_limit", 0)) or default_process_limit
        client_limit = as_int(_get(section, "client_limit", 0)) or default_client_limit
        vsz_raw = as_size(_resolve(cfg, _get(section, "vsz_limit", UNSET_SIZE)))
        vsz = default_vsz if vsz_raw == UNSET_SIZE else vsz_raw
        idle_raw = as_time(_resolve(cfg, _get(section, "idle_kill", 0)))
        idle = 0.0 if idle_raw >= UNSET_TIME else (idle_raw or default_idle)
        user = str(_resolve(cfg, _get(section, "user", "")) or "")
        group = str(_resolve(cfg, _get(section, "group", "")) or "")
        extra = tuple(g for g in str(_resolve(cfg, _get(section, "extra_groups", "")) or "")
                      .replace(",", " ").split())
        chroot = str(_resolve(cfg, _get(section, "chroot", "")) or "")
        if chroot:
            chroot = abs_path(base_dir, chroot)
        ms.services.append(ServiceSpec(
            name=name, executable=executable, type=str(_get(section, "type", "")),
            protocol=protocol, user=user, group=group, extra_groups=extra, chroot=chroot,
            process_min_avail=as_int(_get(section, "process_min_avail", 0)),
            process_limit=process_limit, client_limit=client_limit,
            service_count=as_int(_get(section, "service_count", 0)),
            idle_kill=idle, vsz_limit=vsz,
            listeners=tuple(build_listeners(cfg, section, base_dir))))
    return ms


def import_environment(value: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Dovecot's ``import_environment``: the only variables children get. ``KEY`` copies the
    master's value (when set), ``KEY=VALUE`` sets one. systemd's own variables are consumed
    by the master and never passed on."""
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for item in unquote(value).split():
        key, eq, val = item.partition("=")
        if key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET"):
            continue
        if eq:
            out[key] = val
        elif key in env:
            out[key] = env[key]
    return out


# -- users and groups --------------------------------------------------------------------------
@dataclass(frozen=True)
class Credentials:
    uid: int
    gid: int
    groups: tuple[int, ...]


def lookup_uid(user: str) -> int:
    if user.isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise SettingsError(f"User doesn't exist: {user}") from None


def lookup_gid(group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise SettingsError(f"Group doesn't exist: {group}") from None


def credentials(spec: ServiceSpec) -> Credentials | None:
    """uid/gid/supplementary groups the service runs as; None = stay as the master's user."""
    if not spec.user and not spec.group and not spec.extra_groups:
        return None
    if spec.user:
        try:
            pw = pwd.getpwnam(spec.user) if not spec.user.isdigit() else pwd.getpwuid(
                int(spec.user))
        except KeyError:
            raise SettingsError(f"{spec.describe()}: User doesn't exist: {spec.user} "
                                f"(See service {spec.name} {{ user }} setting)") from None
        uid, gid = pw.pw_uid, pw.pw_gid
    else:
        uid, gid = os.getuid(), os.getgid()
    if spec.group:
        try:
            gid = lookup_gid(spec.group)
        except SettingsError:
            raise SettingsError(f"{spec.describe()}: Group doesn't exist: {spec.group} "
                                f"(See service {spec.name} {{ group }} setting)") from None
    extra = []
    for g in spec.extra_groups:
        try:
            extra.append(lookup_gid(g))
        except SettingsError:
            raise SettingsError(f"{spec.describe()}: Group doesn't exist: {g} "
                                f"(See service {spec.name} {{ extra_groups }} setting)") from None
    return Credentials(uid, gid, tuple(dict.fromkeys([gid, *extra])))
