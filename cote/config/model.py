"""The typed settings tree: ``Config`` (global settings, filters, sections) and ``Section``.

``cote.config.builder`` fills it from the parser's raw tree. Filters (``protocol``/``local``/
``remote``/``local_name``) are kept aside, sorted from least to most specific, and applied by
``Config.lookup``; the result of a lookup is cached per set of matching filters, so the
per-connection cost is a few integer comparisons.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from cote.config import schema
from cote.config.errors import ConfigError
from cote.config.schema import Spec
from cote.config.values import Value

_VAR_RE = re.compile(r"(?<!%)\$([A-Za-z0-9_]+)")


@dataclass(slots=True)
class Setting:
    """One explicitly set value: ``text`` is what doveconf -n prints, ``value`` the typed one."""
    text: str
    value: Value
    file: str
    line: int
    file_ref: str | None = None    # ``key = <path``: the path (value holds the contents)


@dataclass(slots=True)
class Net:
    text: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None   # None: matches nothing
    bits: int

    def matches(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        if ip is None or self.network is None or ip.version != self.network.version:
            return False
        return ip in self.network


@dataclass(slots=True)
class Filter:
    protocol: str | None = None
    local: Net | None = None
    remote: Net | None = None
    local_name: str | None = None
    file: str = ""
    line: int = 0
    settings: dict[str, Setting] = field(default_factory=dict)
    plugin: dict[str, Setting] = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)

    @property
    def ident(self) -> tuple[str | None, str | None, str | None, str | None]:
        return (self.protocol, self.local.text if self.local else None,
                self.remote.text if self.remote else None, self.local_name)

    def sort_key(self) -> tuple[bool, int, int, bool]:
        return (self.local_name is not None, self.local.bits if self.local else 0,
                self.remote.bits if self.remote else 0, self.protocol is not None)


class Section:
    """A section of the config (``service imap-login``, ``inet_listener imaps``, ``passdb``...)."""

    __slots__ = (
        "_cache",
        "_children",
        "_defaults",
        "_root",
        "_set",
        "_specs",
        "builtin",
        "file",
        "kind",
        "line",
        "name",
        "seq",
    )

    def __init__(self, kind: str, name: str, file: str | None, line: int | None,  # noqa: PLR0917
                 root: Config | None, defaults: dict[str, str] | None = None,
                 builtin: bool = False) -> None:
        self.kind = kind
        self.name = name
        self.file = file
        self.line = line
        self._specs: dict[str, Spec] | None = schema.TABLES.get(kind)
        self._defaults = defaults or {}
        self._set: dict[str, Setting] = {}
        self._children: dict[str, list[Section]] = {}
        self._root = root
        self.builtin = builtin
        self._cache: dict[str, Value] = {}
        self.seq = 0

    def __repr__(self) -> str:
        return f"Section({self.kind!r}, {self.name!r})"

    def default_text(self, key: str) -> str:
        if self._specs is None:
            raise KeyError(key)
        spec = self._specs[key]
        return self._defaults.get(key, spec.default)

    def get(self, key: str) -> Value:
        """Typed value of ``key``, with the section's Dovecot default when not set."""
        s = self._set.get(key)
        if s is not None:
            return s.value
        v = self._cache.get(key)
        if v is not None:
            return v
        if self._specs is None:
            raise KeyError(key)
        spec = self._specs[key]
        text = self._defaults.get(key, spec.default)
        if "$" in text and self._root is not None:
            text = self._root.expand_default(text)
        v = self._cache[key] = spec.parse(text)
        return v

    def is_set(self, key: str) -> bool:
        return key in self._set

    def setting(self, key: str) -> Setting | None:
        return self._set.get(key)

    def settings(self) -> dict[str, Setting]:
        return self._set

    def setting_names(self) -> list[str]:
        return list(self._specs) if self._specs is not None else list(self._set)

    def items(self) -> dict[str, str]:
        """Free-form sections (plugin, dict): the key → value strings."""
        return {k: str(s.value) for k, s in self._set.items()}

    def sections(self, kind: str) -> list[Section]:
        return list(self._children.get(kind, ()))

    def all_children(self) -> Iterator[Section]:
        for lst in self._children.values():
            yield from lst

    def child(self, kind: str, name: str) -> Section | None:
        for s in self._children.get(kind, ()):
            if s.name == name:
                return s
        return None

    def add_child(self, sec: Section) -> None:
        self._children.setdefault(sec.kind, []).append(sec)


class Config:
    """The parsed configuration: global settings, sections and filters (see cote.config)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.warnings: list[str] = []
        self._set: dict[str, Setting] = {}
        self._plugin: dict[str, Setting] = {}
        self._sections: dict[str, list[Section]] = {}
        self._filters: list[Filter] = []
        self._view_cache: dict[tuple[int, ...], Config | ConfigError] = {}
        self.late_error: ConfigError | None = None   # found while parsing, reported by check
        self._base: Config = self

    # -- the agreed API ---------------------------------------------------------------------
    def get(self, key: str) -> Value:
        s = self._set.get(key)
        if s is not None:
            return s.value
        return _default_value(key)

    def sections(self, kind: str) -> list[Section]:
        if kind == "plugin":
            if not self._plugin:
                return []
            sec = Section("plugin", "", None, None, self)
            sec._set = self._plugin
            return [sec]
        return list(self._sections.get(kind, ()))

    def plugin(self) -> dict[str, str]:
        return {k: str(s.value) for k, s in self._plugin.items()}

    def lookup(self, *, protocol: str | None = None, local_ip: str | None = None,
               remote_ip: str | None = None, local_name: str | None = None) -> Config:
        """The settings for a connection: matching filter blocks applied over the globals,
        the more specific one winning. Raises ConfigError when two matching filters that are
        not nested in each other set the same setting (doveconf's "Conflict in setting")."""
        base = self._base
        matched = base._match(protocol, local_ip, remote_ip, local_name)
        view = base._view_cache.get(matched)
        if view is None:
            view = base._make_view(matched)
            if len(base._view_cache) < 4096:
                base._view_cache[matched] = view
        if isinstance(view, ConfigError):
            raise view
        return view

    def lookup_lenient(self, *, protocol: str | None = None, local_ip: str | None = None,
                       remote_ip: str | None = None, local_name: str | None = None) -> Config:
        """Like ``lookup`` but a conflict resolves to the most specific filter's value."""
        base = self._base
        view = base._make_view(base._match(protocol, local_ip, remote_ip, local_name),
                               check=False)
        assert isinstance(view, Config)
        return view

    def _match(self, protocol: str | None, local_ip: str | None, remote_ip: str | None,
               local_name: str | None) -> tuple[int, ...]:
        lip = _ip_or_none(local_ip)
        rip = _ip_or_none(remote_ip)
        return tuple(
            i for i, f in enumerate(self._filters)
            if (f.protocol is None or f.protocol == protocol)
            and (f.local is None or f.local.matches(lip))
            and (f.remote is None or f.remote.matches(rip))
            and (f.local_name is None or _name_matches(f.local_name, local_name)))

    def filters_compatible(self, *, protocol: str | None = None, local_ip: str | None = None,
                           remote_ip: str | None = None,
                           local_name: str | None = None) -> list[Filter]:
        """Filters a lookup with these (partial) criteria does not rule out (doveconf -f -n)."""
        lip = _ip_or_none(local_ip)
        rip = _ip_or_none(remote_ip)
        return [f for f in self._base._filters
                if (protocol is None or f.protocol is None or f.protocol == protocol)
                and (local_ip is None or f.local is None or f.local.matches(lip))
                and (remote_ip is None or f.remote is None or f.remote.matches(rip))
                and (local_name is None or f.local_name is None
                     or _name_matches(f.local_name, local_name))]

    # -- helpers for dumping and the other modules -------------------------------------------
    def setting(self, key: str) -> Setting | None:
        return self._set.get(key)

    def settings(self) -> dict[str, Setting]:
        return self._set

    def plugin_settings(self) -> dict[str, Setting]:
        return self._plugin

    @property
    def filters(self) -> list[Filter]:
        return self._base._filters

    def text(self, key: str) -> str:
        """The printed (doveconf) form of a global setting."""
        s = self._set.get(key)
        return s.text if s is not None else schema.GLOBAL[key].default

    def expand_default(self, text: str) -> str:
        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name in schema.GLOBAL:
                return self.text(name)
            return m.group(0)
        return _VAR_RE.sub(repl, text)

    def _conflict(self, matched: tuple[int, ...]) -> ConfigError | None:
        # Most specific first; a filter that is not a superset of the previous one must not
        # set anything already set by the more specific ones.
        order = [self._filters[i] for i in reversed(matched)]
        changed: set[str] = set()
        for pos, f in enumerate(order):
            if pos and not _is_superset(f, order[pos - 1]):
                for key in sorted(f.settings):
                    if key in changed:
                        msg = f"Conflict in setting {key} found from filter at {f.file}:{f.line}"
                        return ConfigError(msg, file=f.file, line=f.line, message=msg)
            changed.update(f.settings)
        return None

    def _make_view(self, matched: tuple[int, ...], *, check: bool = True) -> Config | ConfigError:
        if check and len(matched) > 1:
            err = self._conflict(matched)
            if err is not None:
                return err
        view = Config(self.path)
        view.warnings = self.warnings
        view._sections = self._sections
        view._filters = self._filters
        view._base = self
        view._set = dict(self._set)
        view._plugin = dict(self._plugin)
        for i in matched:
            f = self._filters[i]
            view._set.update(f.settings)
            view._plugin.update(f.plugin)
            for sec in f.sections:
                view._sections = {k: list(v) for k, v in view._sections.items()}
                lst = view._sections.setdefault(sec.kind, [])
                lst[:] = [s for s in lst if s.name != sec.name or not sec.name] + [sec]
        return view


def _is_superset(sup: Filter, f: Filter) -> bool:
    """``sup`` is a less specific filter than ``f`` (both known to match the same lookup)."""
    if (sup.local.bits if sup.local else 0) > (f.local.bits if f.local else 0):
        return False
    if (sup.remote.bits if sup.remote else 0) > (f.remote.bits if f.remote else 0):
        return False
    if sup.local_name is not None and f.local_name is None:
        return False
    return not (sup.protocol is not None and f.protocol is None)


_DEFAULTS: dict[str, Value] = {}


def _default_value(key: str) -> Value:
    v = _DEFAULTS.get(key)
    if v is None:
        v = schema.GLOBAL[key].parse(schema.GLOBAL[key].default)
        _DEFAULTS[key] = v
    return v


def _ip_or_none(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        ip = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _name_matches(pattern: str, name: str | None) -> bool:
    if name is None:
        return False
    if pattern.startswith("*."):
        return name.endswith(pattern[1:])
    return any(p == name for p in pattern.split())
