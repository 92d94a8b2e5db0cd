"""The Dovecot settings that change how Maildir is written, read from the user's config.

``mail_fsync``, ``maildir_copy_with_hardlinks``, ``maildir_very_dirty_syncs``,
``maildir_empty_new`` and ``mail_max_lock_timeout`` keep Dovecot's names and meanings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from cote.storage.errors import StorageError

FSYNC_MODES = ("optimized", "always", "never")
_UNITS = {"": 1, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1, "m": 60, "min": 60,
          "mins": 60, "minute": 60, "minutes": 60, "h": 3600, "hour": 3600, "hours": 3600}


class SettingError(StorageError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="SERVERBUG")


def _bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("yes", "y", "true", "1"):
        return True
    if text in ("no", "n", "false", "0", ""):
        return False
    raise SettingError(f"{name}: invalid boolean {value!r}")


def _seconds(name: str, value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", str(value).lower())
    if not m or m.group(2) not in _UNITS:
        raise SettingError(f"{name}: invalid time {value!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass(frozen=True, slots=True)
class MaildirSettings:
    fsync: str = "optimized"
    copy_with_hardlinks: bool = True
    #: trust that only cote (and Dovecot) change the Maildir: after its own changes under the
    #: lock cote keeps the index signature instead of rescanning the directory
    very_dirty_syncs: bool = False
    #: move new/ -> cur/ even for read-only (EXAMINE) sessions
    empty_new: bool = False
    #: how long to wait for a lock; 0 = until it would be stale (122 s)
    max_lock_timeout: float = 0.0

    def __post_init__(self) -> None:
        if self.fsync not in FSYNC_MODES:
            raise SettingError(f"mail_fsync: unknown value {self.fsync!r} "
                               f"(optimized, always or never)")

    @classmethod
    def from_config(cls, get: Callable[[str], object]) -> MaildirSettings:
        """From a config lookup (``cfg.get``); missing settings keep Dovecot's defaults."""
        def value(name: str, default: object) -> object:
            try:
                v = get(name)
            except KeyError:
                return default
            return default if v is None else v

        return cls(
            fsync=str(value("mail_fsync", "optimized")),
            copy_with_hardlinks=_bool("maildir_copy_with_hardlinks",
                                      value("maildir_copy_with_hardlinks", "yes")),
            very_dirty_syncs=_bool("maildir_very_dirty_syncs",
                                   value("maildir_very_dirty_syncs", "no")),
            empty_new=_bool("maildir_empty_new", value("maildir_empty_new", "no")),
            max_lock_timeout=_seconds("mail_max_lock_timeout",
                                      value("mail_max_lock_timeout", "0")),
        )
