"""The typed settings tree: ``Config`` (global settings, filters, sections) and ``Section``.

``build`` turns the parser's raw tree into typed values, checking every key and value against
the Dovecot 2.3 schema with doveconf's error messages. Filters (``protocol``/``local``/
``remote``/``local_name``) are kept aside, sorted from least to most specific, and applied by
``Config.lookup``; the result of a lookup is cached per set of matching filters, so the
per-connection cost is a few integer comparisons.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

from cote.config import schema
from cote.config.errors import ConfigError
from cote.config.parser import RawBlock, RawSetting
from cote.config.schema import Spec
from cote.config.values import Value, format_value

_VAR_RE = re.compile(r"(?<!%)\$([A-Za-z0-9_]+)")
# In values doveconf treats a word starting with '$' as a variable reference: ``$name``.
_WORD_VAR_RE = re.compile(r"(^|(?<=\s))\$(\S+)")


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
        if self._specs is None:
            raise KeyError(key)
        spec = self._specs[key]
        text = self._defaults.get(key, spec.default)
        if "$" in text and self._root is not None:
            text = self._root.expand_default(text)
        return spec.parse(text)

    def is_set(self, key: str) -> bool:
        return key in self._set

    def setting(self, key: str) -> Setting | None:
        return self._set.get(key)

    def settings(self) -> dict[str, Setting]:
        return self._set

    def keys(self) -> list[str]:
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


def _net_inside(inner: Net, outer: Net) -> bool:
    a, b = inner.network, outer.network
    if a is None or b is None:
        return False
    if isinstance(a, ipaddress.IPv4Network) and isinstance(b, ipaddress.IPv4Network):
        return a.subnet_of(b)
    if isinstance(a, ipaddress.IPv6Network) and isinstance(b, ipaddress.IPv6Network):
        return a.subnet_of(b)
    return False


# Filters nest in this order only: local { remote { local_name { protocol { } } } }.
_FILTER_NESTING = ("local", "remote", "local_name", "protocol")


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


# ------------------------------------------------------------------------------------------
# Building a Config from the raw tree


class _Builder:
    def __init__(self, path: str, *, strict: bool) -> None:
        self.cfg = Config(path)
        self.strict = strict
        self.unknown_vars: list[ConfigError] = []
        self.missing_files: list[ConfigError] = []
        self.service_count = 0
        self.seq = 0
        for name, body in schema.builtin_services().items():
            self.cfg._sections.setdefault("service", []).append(self._builtin_service(name, body))
            self.service_count += 1

    def _builtin_service(self, name: str, body: dict[str, object]) -> Section:
        defaults = {k: v for k, v in body.items() if isinstance(v, str)}
        sec = Section("service", name, None, None, self.cfg, defaults, builtin=True)
        for k, v in body.items():
            if isinstance(v, dict):
                kind, _, lname = k.partition(" ")
                lsec = Section(kind, lname, None, None, self.cfg,
                               {a: b for a, b in v.items() if isinstance(b, str)}, builtin=True)
                sec.add_child(lsec)
        return sec

    # -- errors
    @staticmethod
    def _err(file: str, line: int, message: str) -> ConfigError:
        return ConfigError(f"Error in configuration file {file} line {line}: {message}",
                           file=file, line=line, message=message)

    def _check_err(self, message: str) -> ConfigError:
        p = self.cfg.path
        return ConfigError(f"Error in configuration file {p}: {message}", file=p, line=None,
                           message=message)

    # -- values
    def _expand(self, item: RawSetting, flt: Filter | None, *, global_scope: bool) -> str:
        """Expand ``$name`` words: all of them when strict (doveconf -x, the servers), only a
        setting's reference to itself (``mail_plugins = $mail_plugins x``) otherwise."""
        text = item.value
        if item.quoted or item.file_ref or "$" not in text:
            return text

        def repl(m: re.Match[str]) -> str:
            name = m.group(2)
            if name == item.key and not global_scope:
                raise self._err(item.file, item.line, f"Unknown variable: ${name}")
            if not self.strict and name != item.key:
                if name not in schema.GLOBAL:
                    self.unknown_vars.append(
                        self._err(item.file, item.line, f"Unknown variable: ${name}"))
                return m.group(0)
            if flt is not None and name in flt.settings:
                return m.group(1) + flt.settings[name].text
            if name in self.cfg._set:
                return m.group(1) + self.cfg._set[name].text
            if name in schema.GLOBAL:
                return m.group(1) + schema.GLOBAL[name].default
            raise self._err(item.file, item.line, f"Unknown variable: ${name}")
        return _WORD_VAR_RE.sub(repl, text)

    def _read_file_ref(self, item: RawSetting) -> str:
        path = item.value
        if not path.startswith("/"):
            path = os.path.join(os.path.dirname(item.file), path)
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as fh:
                return fh.read()
        except OSError as e:
            err = self._err(item.file, item.line,
                            f"{item.key}: Can't open file {item.value}: {e.strerror}")
            if self.strict:
                raise err from None
            self.missing_files.append(err)
            return ""

    def _make_setting(self, item: RawSetting, spec: Spec | None, flt: Filter | None, *,
                      global_scope: bool = False) -> Setting:
        if item.file_ref:
            content = self._read_file_ref(item)
            value: Value = content
            if spec is not None and spec.kind != "str":
                try:
                    value = spec.parse(content.strip())
                except ValueError as e:
                    raise self._err(item.file, item.line, str(e)) from None
            return Setting("<" + item.value, value, item.file, item.line, file_ref=item.value)
        text = self._expand(item, flt, global_scope=global_scope)
        if spec is None or spec.kind == "str":
            return Setting(text, text, item.file, item.line)
        try:
            value = spec.parse(text)
        except ValueError as e:
            raise self._err(item.file, item.line, str(e)) from None
        return Setting(schema_format(spec, value), value, item.file, item.line)

    # -- walking the tree
    def build(self, root: RawBlock) -> Config:
        self._walk_global(root, None)
        self._check()
        self.cfg._filters.sort(key=Filter.sort_key)
        return self.cfg

    def _global_setting(self, item: RawSetting, flt: Filter | None) -> None:
        spec = schema.GLOBAL.get(item.key)
        if spec is None:
            raise self._err(item.file, item.line, f"Unknown setting: {item.key}")
        if flt is not None and (flt.local or flt.remote) and item.key.startswith("auth_"):
            raise self._err(item.file, item.line,
                            f"Auth settings not supported inside local/remote blocks: {item.key}")
        if item.key == "auth_cache_size" and item.value.isdigit() and 0 < int(item.value) < 1024:
            # Dovecot < 2.0 took megabytes here; doveconf still converts a bare number.
            item = RawSetting(item.key, item.value + "M", item.file, item.line)
        s = self._make_setting(item, spec, flt, global_scope=True)
        if flt is None:
            for f in self.cfg._filters:
                earlier = f.settings.get(item.key)
                if earlier is not None:
                    at = f"{earlier.file} line {earlier.line}"
                    self.cfg.warnings.append(
                        f"{item.file} line {item.line}: Global setting {item.key} won't change "
                        f"the setting inside an earlier filter at {at} (if this is "
                        f"intentional, avoid this warning by moving the global setting before "
                        f"{at})")
                    break
        (flt.settings if flt is not None else self.cfg._set)[item.key] = s

    def _walk_global(self, block: RawBlock, flt: Filter | None) -> None:
        for item in block.items:
            if isinstance(item, RawSetting):
                self._global_setting(item, flt)
                continue
            kind = item.kind
            if kind in schema.FILTERS:
                self._walk_global(item, self._filter(item, flt))
            elif kind in schema.FREE_FORM:
                target: dict[str, Setting]
                if kind == "plugin":
                    target = flt.plugin if flt is not None else self.cfg._plugin
                    self._walk_free(item, target, flt)
                else:
                    sec = self._section_for(item, None, flt)
                    self._walk_free(item, sec._set, flt)
            elif kind in schema.CHILDREN[""]:
                if flt is not None and (flt.local or flt.remote) and kind in ("passdb", "userdb"):
                    raise self._err(item.file, item.line,
                                    f"Auth settings not supported inside local/remote blocks: "
                                    f"{kind}")
                sec = self._section_for(item, None, flt)
                self._walk_section(item, sec, [kind], flt)
            else:
                raise self._err(item.file, item.line, f"Unknown setting: {kind} {{ {kind}")

    def _walk_free(self, block: RawBlock, target: dict[str, Setting], flt: Filter | None) -> None:
        for item in block.items:
            if isinstance(item, RawBlock):
                raise self._err(item.file, item.line, "Section not allowed here")
            target[item.key] = self._make_setting(item, None, flt)

    def _walk_section(self, block: RawBlock, sec: Section, path: list[str],
                      flt: Filter | None) -> None:
        specs = schema.TABLES[sec.kind]
        allowed = schema.CHILDREN.get(sec.kind, frozenset())
        for item in block.items:
            if isinstance(item, RawSetting):
                spec = specs.get(item.key)
                if spec is None:
                    raise self._err(item.file, item.line,
                                    "Unknown setting: " + " { ".join([*path, item.key]))
                sec._set[item.key] = self._make_setting(item, spec, flt)
                continue
            if item.kind not in allowed:
                raise self._err(item.file, item.line,
                                "Unknown setting: " + " { ".join([*path, item.kind, item.kind]))
            child = self._section_for(item, sec, flt)
            self._walk_section(item, child, [*path, item.kind], flt)

    def _section_for(self, item: RawBlock, parent: Section | None, flt: Filter | None) -> Section:
        kind, name = item.kind, item.name
        if parent is not None:
            existing = parent.child(kind, name)
            if existing is not None:
                return existing
            defaults = None
            if kind == "inet_listener":
                defaults = schema.INET_DEFAULTS
            elif kind in ("unix_listener", "fifo_listener"):
                defaults = schema.UNIX_DEFAULTS
            sec = Section(kind, name, item.file, item.line, self.cfg, defaults)
            self.seq += 1
            sec.seq = self.seq
            parent.add_child(sec)
            return sec
        lst = flt.sections if flt is not None else self.cfg._sections.setdefault(kind, [])
        if name or kind not in schema.ORDERED_KINDS:
            for s in lst:
                if s.kind == kind and s.name == name and (name or kind != "service"):
                    if s.file is None:
                        s.file, s.line = item.file, item.line
                    return s
        defaults = schema.SERVICE_DEFAULTS if kind == "service" else None
        sec = Section(kind, name, item.file, item.line, self.cfg, defaults)
        self.seq += 1
        sec.seq = self.seq
        if kind == "service":
            self.service_count += 1
            if not name:
                raise self._check_err(f"Service #{self.service_count - 1} is missing name")
        lst.append(sec)
        return sec

    def _filter(self, item: RawBlock, parent: Filter | None) -> Filter:
        kind, name = item.kind, item.name
        p = parent or Filter()
        present = {"local": p.local is not None, "remote": p.remote is not None,
                   "local_name": p.local_name is not None, "protocol": p.protocol is not None}
        if kind == "protocol" and p.protocol is not None:
            raise self._err(item.file, item.line,
                            "Nested protocol { protocol { .. } } block not allowed")
        for outer in _FILTER_NESTING[_FILTER_NESTING.index(kind) + 1:]:
            if present[outer]:
                raise self._err(item.file, item.line,
                                f"{outer} {{ {kind} {{ .. }} }} not allowed "
                                f"(use {kind} {{ {outer} {{ .. }} }} instead)")
        f = Filter(p.protocol, p.local, p.remote, p.local_name, item.file, item.line)
        if kind == "protocol":
            f.protocol = name
        elif kind == "local_name":
            f.local_name = name
        else:
            net = self._net(item, name)
            enclosing = p.local if kind == "local" else p.remote
            if enclosing is not None and not _net_inside(net, enclosing):
                raise self._err(item.file, item.line,
                                f"{kind} net1 {{ {kind} net2 {{ .. }} }} requires net2 to be "
                                "inside net1")
            if kind == "local":
                f.local = net
            else:
                f.remote = net
        for existing in self.cfg._filters:
            if existing.ident == f.ident:
                return existing
        self.cfg._filters.append(f)
        return f

    def _net(self, item: RawBlock, text: str) -> Net:
        addr, slash, bits_text = text.partition("/")
        try:
            ip = ipaddress.ip_address(addr.strip("[]"))
        except ValueError:
            try:
                infos = socket.getaddrinfo(addr, None, socket.AF_INET)
            except (socket.gaierror, UnicodeError) as e:
                msg = e.strerror if isinstance(e, socket.gaierror) else "Name or service not known"
                raise self._err(item.file, item.line,
                                f"gethostbyname({addr}) failed: {msg}") from None
            ip = ipaddress.ip_address(str(infos[0][4][0]))
        # doveconf prints the address it resolved, without brackets
        text = str(ip) + (slash + bits_text if slash else "")
        maxbits = 32 if ip.version == 4 else 128
        if slash:
            if not bits_text.isdigit() or int(bits_text) > maxbits:
                raise self._err(item.file, item.line, f"Invalid network mask: {bits_text}")
            bits = int(bits_text)
        else:
            bits = maxbits
        net = ipaddress.ip_network(f"{ip}/{bits}", strict=False)
        return Net(text, net, bits)

    # -- whole-config checks (doveconf reports these without a line)
    def _check(self) -> None:
        protocols = self.cfg.text("protocols").split()
        for p in protocols:
            if p not in schema.PROTOCOLS:
                raise self._check_err(f"protocols: Unknown protocol: {p}")
        all_ns = list(self.cfg._sections.get("namespace", []))
        for f in self.cfg._filters:
            all_ns += [s for s in f.sections if s.kind == "namespace"]
        for ns in all_ns:
            sep = ns.setting("separator")
            if sep is not None and len(str(sep.value)) > 1:
                prefix = ns.setting("prefix")
                raise self._check_err(
                    f"Namespace '{prefix.text if prefix else ''}': "
                    "Hierarchy separator must be only one character long")
            for mb in ns.sections("mailbox"):
                su = mb.setting("special_use")
                if su is None:
                    continue
                for word in str(su.value).split():
                    if word not in schema.SPECIAL_USE:
                        raise self._check_err(f"mailbox {mb.name}: unknown special_use: {word}")
        self._check_stats()
        scopes = [self.cfg._set] + [f.settings for f in self.cfg._filters]
        for scope in scopes:
            self._check_values(scope)
        for key in ("default_login_user", "default_internal_user"):
            user = str(self.cfg.get(key))
            try:
                pwd.getpwnam(user)
            except KeyError:
                raise self._check_err(f"{key} doesn't exist: {user}") from None
        self._check_listeners(set(protocols))
        if self.cfg.get("pop3_delete_type") == "flag" and not self.cfg.get("pop3_deleted_flag"):
            raise self._check_err("pop3_delete_type=flag, but pop3_deleted_flag not set")


    def _check_stats(self) -> None:
        for m in self.cfg._sections.get("metric", []):
            if not str(m.get("filter")):
                raise self._check_err(
                    f"metric {m.name} {{ filter }} is empty - will not match anything")
        for e in self.cfg._sections.get("event_exporter", []):
            fmt, transport = str(e.get("format")), str(e.get("transport"))
            if not fmt:
                raise self._check_err("Exporter format name can't be empty")
            if not transport:
                raise self._check_err("Exporter transport name can't be empty")
            if fmt not in ("none", "json", "tab-text"):
                raise self._check_err(f"Unknown exporter format '{fmt}'")
            if transport not in ("drop", "log", "http-post"):
                raise self._check_err(f"Unknown transport type '{transport}'")
            if fmt != "none" and not any(w.startswith("time-")
                                         for w in str(e.get("format_args")).split()):
                raise self._check_err(f"{fmt} exporter format requires a time-* argument")

    def _check_values(self, scope: dict[str, Setting]) -> None:
        for key, (allowed, message) in schema.WORD_LISTS.items():
            s = scope.get(key)
            if s is None:
                continue
            for word in re.split(r"[\s,]+", str(s.value)):
                if word and word not in allowed:
                    raise self._check_err(message.format(word))
        s = scope.get("syslog_facility")
        if s is not None and str(s.value) not in schema.SYSLOG_FACILITIES:
            raise self._check_err(f"Unknown syslog_facility: {s.value}")
        url = scope.get("auth_policy_server_url")
        if url is not None and str(url.value) and not str(self.cfg.get("auth_policy_hash_nonce")):
            raise self._check_err("auth_policy_hash_nonce must be set when policy server is used")
        s = scope.get("pop3_uidl_format")
        if s is not None and "%" not in str(s.value):
            raise self._check_err("pop3_uidl_format setting doesn't contain any %% variables.")

    def _check_listeners(self, enabled: set[str]) -> None:
        """Two listeners of enabled services on the same socket path or port are an error."""
        base_dir = str(self.cfg.get("base_dir"))
        seen: set[str] = set()
        for svc in self.cfg._sections.get("service", []):
            proto = str(svc.get("protocol"))
            if proto and proto not in enabled:
                continue
            keys: list[str] = []
            for kind in ("unix_listener", "fifo_listener"):
                for lst in svc.sections(kind):
                    keys.append(lst.name if lst.name.startswith("/")
                                else f"{base_dir}/{lst.name}")
            for lst in svc.sections("inet_listener"):
                port = lst.get("port")
                if port:
                    keys.append(f"{port}:{lst.get('address')}")
            for key in keys:
                if key in seen:
                    raise self._check_err(f"duplicate listener: {key}")
                seen.add(key)


def schema_format(spec: Spec, value: Value) -> str:
    return format_value(spec.kind, value)


def build(root: RawBlock, path: str, *, strict: bool) -> tuple[Config, list[ConfigError]]:
    """Typed Config from a raw tree; with ``strict`` an unknown ``$var`` or missing ``<file``
    is an error, otherwise those problems are returned for ``doveconf -x`` style reporting."""
    b = _Builder(path, strict=strict)
    cfg = b.build(root)
    return cfg, b.unknown_vars + b.missing_files
