"""Build a typed ``Config`` from the parser's raw tree, with doveconf's checks and messages.

Every key and value is checked against the Dovecot 2.3 schema where it appears (errors name
file and line); ``$name`` and ``<file`` are expanded as doveconf does; whole-config checks
(protocols, special-use, listeners, ...) run at the end and, like doveconf's, name no line.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import re
import socket

from cote.config import obsolete, schema
from cote.config.errors import ConfigError
from cote.config.model import Config, Filter, Net, Section, Setting
from cote.config.parser import RawBlock, RawSetting
from cote.config.schema import Spec
from cote.config.values import Value, format_value

# In values doveconf treats a word starting with '$' as a variable reference: ``$name``.
_WORD_VAR_RE = re.compile(r"(^|(?<=\s))\$(\S+)")


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




class _Builder:
    def __init__(self, path: str, *, strict: bool) -> None:
        self.cfg = Config(path)
        self.strict = strict
        self.unknown_vars: list[ConfigError] = []
        self.missing_files: list[ConfigError] = []
        self.service_count = 0
        self.seq = 0
        self.noted_obsolete = False
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
        self.cfg._filters.sort(key=Filter.sort_key)
        return self.cfg

    def _global_setting(self, item: RawSetting, flt: Filter | None) -> None:
        spec = schema.GLOBAL.get(item.key)
        if spec is None:
            alias = schema.ALIASES.get(item.key)
            if alias is not None:
                self._global_setting(RawSetting(alias, item.value, item.file, item.line,
                                                item.quoted, item.file_ref), flt)
                return
            if item.key in obsolete.OBSOLETE:
                self._obsolete(item, flt)
                return
            raise self._err(item.file, item.line, f"Unknown setting: {item.key}")
        if flt is not None and (flt.local or flt.remote) and item.key.startswith("auth_"):
            raise self._err(item.file, item.line,
                            f"Auth settings not supported inside local/remote blocks: {item.key}")
        if item.key == "protocols" and not item.quoted and any(
                w in ("imaps", "pop3s", "managesieve") for w in item.value.split()):
            item = self._old_protocols(item)
        if item.key == "imap_client_workarounds" and "," in item.value:
            # doveconf's imap settings check rewrites the old comma-separated form
            item = RawSetting(item.key, item.value.replace(",", " "), item.file, item.line,
                              item.quoted, item.file_ref)
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

    def _note_obsolete(self, item: RawSetting, warning: str) -> None:
        if not self.noted_obsolete:
            self.noted_obsolete = True
            self.cfg.warnings.append(obsolete.NOTE.format(prog="coteconf"))
        self.cfg.warnings.append(f"Obsolete setting in {item.file}:{item.line}: {warning}")

    def _old_protocols(self, item: RawSetting) -> RawSetting:
        value, warnings, disabled = obsolete.convert_protocols(item.value)
        for w in warnings:
            self._note_obsolete(item, w)
        for proto in disabled:
            login = next((s for s in self.cfg._sections.get("service", [])
                          if s.name == f"{proto}-login"), None)
            listener = login.child("inet_listener", proto) if login else None
            if listener is not None:
                listener._set["port"] = Setting("0", 0, item.file, item.line)
        return RawSetting(item.key, value, item.file, item.line, item.quoted, item.file_ref)

    def _obsolete(self, item: RawSetting, flt: Filter | None) -> None:
        """An old setting doveconf still takes: convert it and warn like doveconf."""
        conv = obsolete.convert(item.key, item.value, flt.protocol if flt else None)
        self._note_obsolete(item, conv.warning)
        if conv.error:
            self.cfg.warnings.append(conv.error)
        for key, value in conv.globals.items():
            ref = value.startswith("<")
            self._global_setting(RawSetting(key, value[1:] if ref else value, item.file,
                                            item.line, file_ref=ref), flt)
        for key, value in conv.plugin.items():
            target = flt.plugin if flt is not None else self.cfg._plugin
            target[key] = Setting(value, value, item.file, item.line)
        for (name, listener, key), value in conv.services.items():
            sec = next((s for s in self.cfg._sections.get("service", []) if s.name == name), None)
            if sec is None:
                continue
            if listener:
                kind, _, lname = listener.partition(" ")
                child = sec.child(kind, lname)
                if child is None:
                    continue
                sec = child
            spec = schema.TABLES[sec.kind][key]
            try:
                typed = spec.parse(value)
            except ValueError:
                continue    # doveconf drops an old value that does not convert
            text = value if spec.kind == "str" else format_value(spec.kind, typed)
            sec._set[key] = Setting(text, typed, item.file, item.line)

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
            if not name and self.cfg.late_error is None:
                self.cfg.late_error = self._check_err(
                    f"Service #{self.service_count - 1} is missing name")
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


class _Checks:
    """Whole-config checks; like doveconf's they name the file but no line."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def _check_err(self, message: str, *, in_managesieve: bool = False) -> ConfigError:
        p = self.cfg.path
        return ConfigError(f"Error in configuration file {p}: {message}", file=p, line=None,
                           message=message, in_managesieve=in_managesieve)

    def run(self) -> None:
        if self.cfg.late_error is not None:
            raise self.cfg.late_error
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
                    "Hierarchy separator must be only one character long", in_managesieve=True)
            for mb in ns.sections("mailbox"):
                su = mb.setting("special_use")
                if su is None:
                    continue
                for word in str(su.value).split():
                    if word not in schema.SPECIAL_USE:
                        raise self._check_err(f"mailbox {mb.name}: unknown special_use: {word}",
                                              in_managesieve=True)
        self._check_stats()
        for db in self.cfg._sections.get("passdb", []):
            if db.get("pass") and db.setting("result_success") is not None \
                    and db.get("result_success") != "return-ok":
                raise self._check_err(
                    "Obsolete pass=yes setting mixed with non-default result_success")
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
        for key, (_, message) in schema.WORD_LISTS.items():
            s = scope.get(key)
            if s is None:
                continue
            sep = r"\s+" if key in schema.BLANK_SEPARATED_WORD_LISTS else r"[\s,]+"
            for word in re.split(sep, str(s.value)):
                if word and not schema.word_allowed(key, word):
                    raise self._check_err(message.format(word),
                                          in_managesieve=key in schema.SIEVE_DUMP_CHECKED)
        s = scope.get("syslog_facility")
        if s is not None and str(s.value) not in schema.SYSLOG_FACILITIES:
            raise self._check_err(f"Unknown syslog_facility: {s.value}", in_managesieve=True)
        url = scope.get("auth_policy_server_url")
        if url is not None and str(url.value) and not str(self.cfg.get("auth_policy_hash_nonce")):
            raise self._check_err("auth_policy_hash_nonce must be set when policy server is used")
        s = scope.get("pop3_uidl_format")
        if s is not None and "%" not in str(s.value):
            raise self._check_err("pop3_uidl_format setting doesn't contain any %% variables.",
                                  in_managesieve=True)

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


def check(cfg: Config) -> None:
    """Raise ConfigError for the first whole-config problem (doveconf prints its dump first)."""
    _Checks(cfg).run()


def schema_format(spec: Spec, value: Value) -> str:
    return format_value(spec.kind, value)


def build(root: RawBlock, path: str, *, strict: bool) -> tuple[Config, list[ConfigError]]:
    """Typed Config from a raw tree (``check`` is separate); with ``strict`` an unknown
    ``$var`` or missing ``<file`` is an error, otherwise those problems are returned for
    ``doveconf -x`` style reporting."""
    b = _Builder(path, strict=strict)
    cfg = b.build(root)
    return cfg, b.unknown_vars + b.missing_files
