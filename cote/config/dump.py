"""Print a Config the way ``doveconf`` does: ``-n`` (changed settings), ``-a`` (all), ``-h``.

The output shape is a compatibility fact (admins diff it, support scripts parse it): keys and
sections sorted together, sections printed as ``kind name {``, filters last from least to most
specific, secrets hidden unless ``show_secrets``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from cote.config import schema
from cote.config.model import Config, Filter, Section, Setting

HIDDEN = "# hidden, use -P to show it"
_ARGS_PASSWORD = re.compile(r"((?:^|(?<=\s))password=)\S*")

# Pigeonhole fills these in at runtime from the managesieve capability dump; doveconf -n
# always prints them. cote's sieve implementation advertises the same capabilities.
MANAGESIEVE_DYNAMIC = ("managesieve_notify_capability", "managesieve_sieve_capability")


@dataclass(slots=True)
class DumpOptions:
    all: bool = False              # -a: every setting, not only changed ones
    show_secrets: bool = False     # -P
    expand: bool = False           # -x: print <file contents instead of the reference
    # doveconf gets the managesieve capability lines from managesieve-login, which fails (and
    # the lines are missing) when the config has a $variable it cannot expand.
    omit_dynamic: bool = False


def quote(value: str) -> str:
    if value and (value[0] in " \t" or value[-1] in " \t" or "#" in value):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def _name(name: str) -> str:
    if any(c in name for c in " \t#{}\"'"):
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return name


_ESCAPES = {"\\": "\\\\", " ": "\\_", "/": "\\s", "=": "\\e"}
_UNESCAPES = {v[1]: k for k, v in _ESCAPES.items()}


def escape_name(name: str) -> str:
    """A list entry's name as doveconf writes it in setting paths (``Sent\\_Messages``)."""
    return "".join(_ESCAPES.get(c, c) for c in name)


def unescape_name(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _UNESCAPES.get(m.group(1), m.group(1)), text)


def _escape_sort(name: str) -> str:
    # doveconf sorts list entries by their escaped path
    return escape_name(name)


def _section_sort_key(sec: Section) -> str:
    return f"{sec.kind}/{_escape_sort(sec.name)}/"


class Dumper:
    def __init__(self, cfg: Config, opts: DumpOptions,
                 filters: list[Filter] | None = None) -> None:
        self.cfg = cfg
        self.opts = opts
        self.filters = cfg.filters if filters is None else filters

    # -- values
    def _value_text(self, key: str, s: Setting | None, default: str, *, args: bool = False) -> str:
        if s is None:
            text = default
        elif s.file_ref is not None and self.opts.expand:
            text = str(s.value)
        else:
            text = s.text
        if not self.opts.show_secrets and text:
            if schema.is_secret(key):
                return HIDDEN
            if args and "password=" in text:
                return _ARGS_PASSWORD.sub(r"\1#hidden_use-P_to_show#", quote(text))
        return quote(text)

    def _line(self, indent: str, key: str, value: str) -> str:
        return f"{indent}{key} = {value}"

    # -- global scope
    def lines(self) -> Iterator[str]:
        cfg = self.cfg
        entries: list[tuple[str, list[str]]] = []
        for key, spec in schema.GLOBAL.items():
            s = cfg.setting(key)
            default = spec.default
            if key in MANAGESIEVE_DYNAMIC and s is None:
                dyn = self._dynamic_default(key, spec.default)
                if dyn is None or (self.opts.omit_dynamic and not self.opts.all):
                    continue
                default = dyn
            elif key in schema.HIDDEN:
                # left out of -a unless set; -n as usual (a NULL default is "changed" by any value)
                if s is None or not (self.opts.all or key in schema.NULL_DEFAULT
                                     or _changed(spec, s)):
                    continue
            elif not self.opts.all and key not in MANAGESIEVE_DYNAMIC and (
                    s is None or not _changed(spec, s)):
                continue
            entries.append((key, [self._line("", key, self._value_text(key, s, default))]))
        for kind in ("service", "namespace", "passdb", "userdb", "metric", "event_exporter",
                     "dict"):
            for sec in cfg.sections(kind):
                block = self._section(sec, "")
                if block:
                    entries.append((_section_sort_key(sec), block))
        plugin = self._free_block("plugin", "", cfg.plugin_settings(), "")
        if plugin:
            entries.append(("plugin/", plugin))
        entries.sort(key=lambda e: e[0])
        for _, block in entries:
            yield from block
        for f in self.filters:
            yield from self._filter(f)

    def _free_block(self, kind: str, name: str, settings: dict[str, Setting],
                    indent: str) -> list[str]:
        if not settings:
            return []
        head = f"{indent}{kind} {_name(name)} {{" if name else f"{indent}{kind} {{"
        out = [head]
        for key in sorted(settings):
            out.append(self._line(indent + "  ", key, self._value_text(key, settings[key], "")))
        out.append(f"{indent}}}")
        return out

    def _section(self, sec: Section, indent: str) -> list[str]:
        if sec.kind == "dict":
            return self._free_block("dict", sec.name, sec.settings(), indent)
        specs = schema.TABLES[sec.kind]
        compare_default = sec.kind in ("passdb", "userdb")
        always = schema.ALWAYS_PRINTED.get(sec.kind, ())
        entries: list[tuple[str, list[str]]] = []
        inner = indent + "  "
        for key, spec in specs.items():
            s = sec.setting(key)
            if not self.opts.all and not (key in always and sec.file is not None) and (
                    s is None or (compare_default and not _changed(spec, s))):
                continue
            default = sec.default_text(key)
            entries.append((key, [self._line(inner, key, self._value_text(
                key, s, default, args=key == "args"))]))
        for child in sec.all_children():
            block = self._section(child, inner)
            if block:
                entries.append((_section_sort_key(child), block))
        if not entries:
            return []
        entries.sort(key=lambda e: e[0])
        head = f"{indent}{sec.kind} {_name(sec.name)} {{" if sec.name else f"{indent}{sec.kind} {{"
        out = [head]
        for _, block in entries:
            out.extend(block)
        out.append(f"{indent}}}")
        return out

    def _filter(self, f: Filter) -> list[str]:
        heads: list[str] = []
        if f.local is not None:
            heads.append(f"local {f.local.text}")
        if f.remote is not None:
            heads.append(f"remote {f.remote.text}")
        if f.local_name is not None:
            heads.append(f"local_name {_name(f.local_name)}")
        if f.protocol is not None:
            heads.append(f"protocol {f.protocol}")
        indent = "  " * len(heads)
        entries: list[tuple[str, list[str]]] = []
        for key in f.settings:
            spec = schema.GLOBAL[key]
            entries.append((key, [self._line(indent, key, self._value_text(
                key, f.settings[key], spec.default))]))
        for sec in f.sections:
            block = self._section(sec, indent)
            if block:
                entries.append((_section_sort_key(sec), block))
        plugin = self._free_block("plugin", "", f.plugin, indent)
        if plugin:
            entries.append(("plugin/", plugin))
        if not entries:
            return []
        entries.sort(key=lambda e: e[0])
        out = [f"{'  ' * i}{h} {{" for i, h in enumerate(heads)]
        for _, block in entries:
            out.extend(block)
        out.extend(f"{'  ' * i}}}" for i in reversed(range(len(heads))))
        return out

    def _dynamic_default(self, key: str, default: str) -> str | None:
        """Default of a managesieve capability setting (None: doveconf shows no value)."""
        if self.opts.omit_dynamic:
            # managesieve-login failed: -a then shows an empty sieve capability, no notify.
            return None if key == "managesieve_notify_capability" else ""
        return self._sieve_capability(key, default)

    def _sieve_capability(self, key: str, default: str) -> str:
        """The capability Pigeonhole derives from ``sieve_extensions`` (for protocol sieve)."""
        if key != "managesieve_sieve_capability":
            return default
        plugin = self.cfg.lookup(protocol="sieve").plugin()
        words = plugin.get("sieve_extensions", "").split()
        if not words:
            return default
        extprograms = "sieve_extprograms" in plugin.get("sieve_plugins", "").split()
        exts = default.split()
        bare = [w for w in words if w[0] not in "+-"]
        if bare:
            exts = bare
        for w in words:
            name = w[1:]
            if name.startswith("vnd.dovecot.") and not extprograms:
                continue
            if w[0] == "+" and name not in exts:
                exts.append(name)
            elif w[0] == "-" and name in exts:
                exts.remove(name)
        return " ".join(exts)

    # -- doveconf -h
    def value_of(self, path: str) -> list[str] | None:
        """Lines ``doveconf -h path`` prints (None: unknown, prints nothing)."""
        cfg = self.cfg
        parts = path.split("/")
        if len(parts) == 1:
            key = parts[0]
            if key in schema.GLOBAL:
                s = cfg.setting(key)
                default = schema.GLOBAL[key].default
                if key in MANAGESIEVE_DYNAMIC and s is None:
                    dyn = self._dynamic_default(key, default)
                    return None if dyn is None else [dyn]
                if s is None and key in schema.NULL_DEFAULT:
                    return None
                return [self._raw(s, default)]
            if key == "plugin":
                return self._free_block("plugin", "", cfg.plugin_settings(), "")
            return None
        if parts[0] == "plugin" and len(parts) == 2:
            s = cfg.plugin_settings().get(parts[1])
            return [self._raw(s, "")] if s is not None else None
        if parts[0] == "dict" and len(parts) == 2:
            for d in cfg.sections("dict"):
                s = d.setting(parts[1])
                if s is not None:
                    return [self._raw(s, "")]
            return None
        node: Section | None = None
        i = 0
        candidates: list[Section] = []
        while i < len(parts):
            kind = parts[i]
            candidates = node.sections(kind) if node is not None else cfg.sections(kind)
            if i + 1 >= len(parts):
                return None
            name = unescape_name(parts[i + 1])
            found = [s for s in candidates if s.name == name]
            if not found and name.isdigit():
                unnamed = [s for s in candidates if not s.name]
                idx = int(name)
                found = unnamed[idx:idx + 1]
            if not found:
                return None
            node = found[0]
            i += 2
            if i == len(parts):
                return self._section_all(node)
            if i == len(parts) - 1:
                key = parts[i]
                if node.kind == "dict":
                    s = node.setting(key)
                    return [self._raw(s, "")] if s is not None else None
                specs = schema.TABLES.get(node.kind, {})
                if key not in specs:
                    return None
                return [self._raw(node.setting(key), node.default_text(key))]
        return None

    def raw_global(self, key: str) -> str:
        """A global setting as ``-h`` prints it."""
        lines = self.value_of(key)
        return lines[0] if lines else ""

    def _raw(self, s: Setting | None, default: str) -> str:
        if s is None:
            return default
        if s.file_ref is not None and self.opts.expand:
            return str(s.value)
        return s.text

    def _section_all(self, sec: Section) -> list[str]:
        saved = self.opts.all
        self.opts.all = True
        try:
            return self._section(sec, "")
        finally:
            self.opts.all = saved


def _changed(spec: schema.Spec, s: Setting) -> bool:
    if s.file_ref is not None:
        return True
    if spec.kind == "str":
        return s.text != spec.default
    if spec.kind == "enum":
        # doveconf compares against the enum's "first:second:..." default by prefix, so
        # ``result_success = return`` counts as the default ``return-ok``.
        return not spec.default.startswith(str(s.value))
    try:
        return s.value != spec.parse(spec.default)
    except ValueError:
        return True
