"""Quota settings as Dovecot's quota plugin reads them: roots, rules, grace and warnings.

Parsed once per user from the ``plugin { }`` settings merged with the userdb's fields (a
userdb ``quota_rule`` replaces the plugin's ``quota_rule``, as every userdb field overrides the
setting of the same name):

* ``quota[N] = <backend>[:<root name>[:<args>]]`` (``maildir``, ``count``; args
  ``noenforcing``, ``ignoreunlimited``, ``hidden``);
* ``quota[N]_rule[M] = <mailbox>:<limit>[:<limit>…]`` and ``quota_rule[M]``, where a limit is
  ``storage=<n>[B|k|M|G|T|%]`` (kilobytes without a unit), ``bytes=<n>[unit]``,
  ``messages=<n>[k|M…]``, ``+``/``-`` relative to the ``*`` rule, or ``ignore``;
* ``quota_grace = 10%%`` (the default) or a size: the last delivered mail (LDA/LMTP) may take
  the user that far over the limit;
* ``quota_warning[M] = [-]<limits> <command> [args]``: run when usage crosses the limit upwards
  (``-``: downwards); only the first matching warning of a root runs.

``%%`` in an unexpanded value is read as ``%``. Bad values raise :class:`QuotaConfigError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase

from cote.storage.errors import StorageError

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_NUMBER = re.compile(r"(\d+)\s*([A-Za-z%]*)\Z")
DEFAULT_GRACE_PERCENT = 10


class QuotaConfigError(StorageError):
    def __init__(self, message: str) -> None:
        super().__init__(f"quota: {message}", code="SERVERBUG")


@dataclass(frozen=True, slots=True)
class Limits:
    """Byte and message limits (0 = none); percentages and relativity still unresolved."""

    bytes: int = 0
    count: int = 0
    bytes_percent: int | None = None
    count_percent: int | None = None
    bytes_sign: int = 0  # +1/-1: relative to the default rule; 0: absolute
    count_sign: int = 0
    bytes_set: bool = False
    count_set: bool = False


@dataclass(frozen=True, slots=True)
class Rule:
    mailbox: str  # "*" is the default rule; wildcards * and ? match names
    limits: Limits
    ignore: bool = False


@dataclass(frozen=True, slots=True)
class Warning:
    limits: Limits
    command: tuple[str, ...]  # service (socket) name or path, then its arguments
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class RootSettings:
    """One quota root: backend, name, its rules, grace and warnings."""

    backend: str
    name: str
    args: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    grace: Limits = field(default_factory=lambda: Limits(bytes_percent=DEFAULT_GRACE_PERCENT,
                                                         bytes_set=True))
    warnings: tuple[Warning, ...] = ()
    vsizes: bool = False
    max_mail_size: int = 0
    exceeded_message: str = "Quota exceeded (mailbox for user is full)"
    # quota_over_flag: the script to run when the userdb's flag and the real state disagree
    over_script: tuple[str, ...] = ()
    over_flag_value: str | None = None  # the wildcard mask meaning "over"
    over_flag: str | None = None  # the user's flag (a userdb field)
    over_flag_lazy: bool = False

    @property
    def enforcing(self) -> bool:
        return "noenforcing" not in self.args

    # -- limits ---------------------------------------------------------------------
    def default_rule(self) -> Rule | None:
        for r in self.rules:
            if r.mailbox == "*":
                return r
        return None

    def default_limits(self) -> tuple[int, int]:
        """Bytes and message limits of the ``*`` rule (0 = unlimited)."""
        r = self.default_rule()
        if r is None or r.ignore:
            return 0, 0
        return (r.limits.bytes if r.limits.bytes_percent is None else 0,
                r.limits.count if r.limits.count_percent is None else 0)

    def rule_for(self, mailbox: str) -> Rule | None:
        """The mailbox's own rule (exact name first, then the first wildcard match)."""
        wild = None
        for r in self.rules:
            if r.mailbox == "*":
                continue
            if r.mailbox == mailbox or (r.mailbox.upper() == "INBOX" == mailbox.upper()):
                return r
            if wild is None and ("*" in r.mailbox or "?" in r.mailbox) \
                    and fnmatchcase(mailbox, r.mailbox):
                wild = r
        return wild

    def is_ignored(self, mailbox: str) -> bool:
        r = self.rule_for(mailbox)
        if r is not None:
            return r.ignore
        d = self.default_rule()
        return d is not None and d.ignore

    def limits_for(self, mailbox: str | None) -> tuple[int, int]:
        """Bytes and message limits when saving into ``mailbox`` (None: the root's own)."""
        b, c = self.default_limits()
        r = self.rule_for(mailbox) if mailbox is not None else None
        if r is None or r.ignore:
            return b, c
        return (_apply(b, r.limits.bytes, r.limits.bytes_percent, r.limits.bytes_sign,
                       r.limits.bytes_set),
                _apply(c, r.limits.count, r.limits.count_percent, r.limits.count_sign,
                       r.limits.count_set))

    def grace_bytes(self) -> int:
        b, _ = self.default_limits()
        g = self.grace
        if g.bytes_percent is not None:
            return b * g.bytes_percent // 100
        return g.bytes

    def warning_limits(self, w: Warning) -> tuple[int, int]:
        b, c = self.default_limits()
        lim = w.limits
        return (_resolve(b, lim.bytes, lim.bytes_percent, lim.bytes_set),
                _resolve(c, lim.count, lim.count_percent, lim.count_set))


def _resolve(default: int, value: int, percent: int | None, is_set: bool) -> int:
    if not is_set:
        return 0
    if percent is not None:
        return default * percent // 100
    return value


def _apply(default: int, value: int, percent: int | None, sign: int, is_set: bool) -> int:
    if not is_set:
        return default
    if percent is not None:
        value = default * percent // 100
    if sign:
        if default == 0:
            return 0  # relative to "unlimited" stays unlimited
        return max(default + sign * value, 0)
    return value


# -- parsing -----------------------------------------------------------------------------
def _unpercent(text: str) -> str:
    return text.replace("%%", "%")


def parse_size(text: str, *, default_unit: int = 1, what: str = "size") -> tuple[int, int | None]:
    """``"1G"`` -> (bytes, None); ``"95%"`` -> (0, 95). Units B k M G T (case-insensitive)."""
    m = _NUMBER.match(_unpercent(text.strip()))
    if m is None:
        raise QuotaConfigError(f"Invalid {what}: {text!r}")
    value, unit = int(m.group(1)), m.group(2).upper()
    if unit == "%":
        return 0, value
    if unit not in _UNITS:
        raise QuotaConfigError(f"Unknown unit: {m.group(2)}")
    return value * (_UNITS[unit] if unit else default_unit), None


def parse_limits(text: str, *, allow_relative: bool = True) -> tuple[Limits, bool]:
    """``storage=1G:messages=100`` (or ``ignore``) -> (limits, ignore)."""
    lim = Limits()
    ignore = False
    for item in _unpercent(text).split(":"):
        item = item.strip()
        if not item:
            continue
        if item == "ignore":
            ignore = True
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise QuotaConfigError(f"Invalid rule limit: {item!r}")
        key = key.strip().lower()
        value = value.strip()
        sign = 0
        if value[:1] in "+-" and value:
            if not allow_relative:
                raise QuotaConfigError(f"Rule can't be relative: {item!r}")
            sign = 1 if value[0] == "+" else -1
            value = value[1:]
        if key in ("storage", "bytes"):
            n, pct = parse_size(value, default_unit=1024 if key == "storage" else 1,
                                what=f"{key} limit")
            lim = replace(lim, bytes=n, bytes_percent=pct, bytes_sign=sign, bytes_set=True)
        elif key == "messages":
            n, pct = parse_size(value, what="messages limit")
            lim = replace(lim, count=n, count_percent=pct, count_sign=sign, count_set=True)
        elif key == "backend":
            continue
        else:
            raise QuotaConfigError(f"Unknown rule limit name: {key}")
    return lim, ignore


def parse_rule(text: str) -> Rule:
    """``Trash:storage=+100M`` -> Rule. The mailbox name may itself contain no ``:``."""
    name, sep, limits = text.strip().partition(":")
    if not sep or not name:
        raise QuotaConfigError(f"Invalid rule: {text!r}")
    lim, ignore = parse_limits(limits, allow_relative=name != "*")
    return Rule(name, lim, ignore)


def parse_warning(text: str) -> Warning:
    text = text.strip()
    reverse = text.startswith("-")
    if reverse:
        text = text[1:]
    words = text.split()
    if len(words) < 2:
        raise QuotaConfigError(f"Invalid quota_warning: {text!r}")
    lim, _ = parse_limits(words[0], allow_relative=False)
    return Warning(lim, tuple(words[1:]), reverse)


def _numbered(settings: Mapping[str, str], key: str) -> list[str]:
    """``key``, ``key2``, ``key3`` … in order, stopping at the first gap (Dovecot's rule)."""
    out = []
    value = settings.get(key)
    n = 2
    while value is not None:
        if value.strip():
            out.append(value)
        value = settings.get(f"{key}{n}")
        n += 1
    return out


def _bool(value: str | None) -> bool:
    return (value or "").strip().lower() in ("yes", "y", "1", "true")


def merge_settings(plugin: Mapping[str, str],
                   user_fields: Mapping[str, str] | None) -> dict[str, str]:
    """Plugin settings overridden by userdb fields (``quota_rule`` or ``plugin/quota_rule``)."""
    merged = dict(plugin)
    for k, v in (user_fields or {}).items():
        key = k.removeprefix("plugin/").removeprefix("userdb_")
        if key.startswith("quota"):
            merged[key] = v
    return merged


def parse_roots(settings: Mapping[str, str]) -> list[RootSettings]:
    """Every configured quota root (``quota``, ``quota2`` …) with its settings."""
    roots: list[RootSettings] = []
    for i, value in enumerate(_numbered(settings, "quota")):
        backend, _, rest = value.strip().partition(":")
        name, _, argtext = rest.partition(":")
        args = tuple(a for a in argtext.split(":") if a)
        if backend not in ("maildir", "count", "dirsize"):
            raise QuotaConfigError(f"Unknown quota backend: {backend}")
        # root 1 reads quota_rule…, root N quotaN_rule… (Dovecot's naming)
        prefix = "quota" if i == 0 else f"quota{i + 1}"
        rules = tuple(parse_rule(r) for r in _numbered(settings, f"{prefix}_rule"))
        warnings = tuple(parse_warning(w) for w in _numbered(settings, f"{prefix}_warning"))
        root = RootSettings(backend=backend, name=name, args=args, rules=rules,
                            warnings=warnings,
                            vsizes=_bool(settings.get("quota_vsizes")))
        grace = settings.get(f"{prefix}_grace")
        if grace is not None:
            n, pct = parse_size(grace, what="quota_grace")
            root = replace(root, grace=Limits(bytes=n, bytes_percent=pct, bytes_set=True))
        maxsize = settings.get("quota_max_mail_size")
        if maxsize:
            root = replace(root, max_mail_size=parse_size(maxsize, what="quota_max_mail_size")[0])
        msg = settings.get("quota_exceeded_message")
        if msg:
            root = replace(root, exceeded_message=msg)
        script = settings.get(f"{prefix}_over_script")
        if script is not None:
            root = replace(root, over_script=tuple(script.split()),
                           over_flag_value=settings.get(f"{prefix}_over_flag_value"),
                           over_flag=settings.get(f"{prefix}_over_flag"),
                           over_flag_lazy=_bool(settings.get(f"{prefix}_over_flag_lazy_check")))
        if backend == "count" and not root.vsizes:
            raise QuotaConfigError("quota count backend requires quota_vsizes=yes")
        roots.append(root)
    return roots
