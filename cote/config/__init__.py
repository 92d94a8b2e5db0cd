"""cote's configuration: Dovecot 2.3's config language parsed into a typed settings tree.

``load(path)`` parses a dovecot.conf (with its includes), checks it against the Dovecot 2.3
schema, applies Dovecot's defaults and returns a ``Config``; a bad config raises ``ConfigError``
whose text is what doveconf prints.
"""

from __future__ import annotations

from cote.config.builder import build, check
from cote.config.errors import ConfigError
from cote.config.implemented import IMPLEMENTED
from cote.config.model import Config, Section, Setting
from cote.config.parser import Parser
from cote.config.values import Value

DEFAULT_PATH = "/etc/dovecot/dovecot.conf"

__all__ = [
    "DEFAULT_PATH",
    "Config",
    "ConfigError",
    "Section",
    "Setting",
    "Value",
    "check",
    "load",
    "parse",
]


def parse(path: str = DEFAULT_PATH, *, strict: bool = True,
          checks: bool = True) -> tuple[Config, list[ConfigError]]:
    """Parse ``path``; with ``strict=False`` unknown ``$vars`` and missing ``<files`` are
    returned instead of raised (doveconf without ``-x``); with ``checks=False`` the
    whole-config checks are left to the caller (``cote.config.check``)."""
    parser = Parser()
    root = parser.parse(path)
    cfg, deferred = build(root, path, strict=strict)
    cfg.late_error = parser.late_error or cfg.late_error
    if checks:
        check(cfg)
    cfg.warnings.extend(parser.warnings)
    cfg.warnings.extend(_unimplemented(cfg))
    return cfg, deferred


def load(path: str = DEFAULT_PATH) -> Config:
    """Parse, validate and apply defaults; raises ConfigError on a bad config."""
    return parse(path, strict=True)[0]


def _unimplemented(cfg: Config) -> list[str]:
    out: list[str] = []

    def note(name: str, key: str, file: str, line: int) -> None:
        if name not in IMPLEMENTED:
            out.append(f"{file} line {line}: {name} is not implemented by cote yet (accepted, "
                       "ignored)")

    for key, s in cfg.settings().items():
        note(key, key, s.file, s.line)
    for f in cfg.filters:
        for key, s in f.settings.items():
            note(key, key, s.file, s.line)

    def walk(sec: Section) -> None:
        if sec.kind in ("plugin", "dict"):
            return
        for key, s in sec.settings().items():
            note(f"{sec.kind}/{key}", key, s.file, s.line)
        for child in sec.all_children():
            walk(child)

    for kind in ("service", "namespace", "passdb", "userdb", "metric", "event_exporter"):
        for sec in cfg.sections(kind):
            walk(sec)
    for f in cfg.filters:
        for sec in f.sections:
            walk(sec)
    return out
