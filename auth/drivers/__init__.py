"""passdb and userdb drivers behind one small interface (see ``base``)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TypeVar

from cote.auth.drivers.base import (
    DriverError,
    PassdbDriver,
    PassdbLookup,
    UserdbDriver,
    UserdbLookup,
)
from cote.config import Config

T = TypeVar("T")
PASSDB_TARGETS = {
    "passwd-file": "passwd_file:PasswdFilePassdb", "static": "static:StaticPassdb",
    "sql": "sql:SqlPassdb", "ldap": "ldap:LdapPassdb", "pam": "pam:PamPassdb",
    "shadow": "system:ShadowPassdb", "checkpassword": "checkpassword:CheckpasswordPassdb",
    "oauth2": "oauth2:OAuth2Passdb",
}
USERDB_TARGETS = {
    "passwd-file": "passwd_file:PasswdFileUserdb", "static": "static:StaticUserdb",
    "sql": "sql:SqlUserdb", "prefetch": "prefetch:PrefetchUserdb", "ldap": "ldap:LdapUserdb",
    "passwd": "system:PasswdUserdb", "checkpassword": "checkpassword:CheckpasswordUserdb",
}


class Drivers(Mapping[str, type[T]]):
    """Driver name -> class, each driver's module imported when first asked for.

    The LDAP and SQL drivers pull in ldap3, psycopg and PyMySQL (~27 MB, ~130 ms): the
    master imports every service's code before it forks, and should carry those only when
    the config names them (see ``preload``) — every fork costs more the bigger the master is.
    """

    def __init__(self, targets: dict[str, str]) -> None:
        self._targets = targets

    def __getitem__(self, name: str) -> type[T]:
        module, _, cls = self._targets[name].partition(":")
        loaded: type[T] = getattr(importlib.import_module(f"{__name__}.{module}"), cls)
        return loaded

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)


PASSDB_DRIVERS: Drivers[PassdbDriver] = Drivers(PASSDB_TARGETS)
USERDB_DRIVERS: Drivers[UserdbDriver] = Drivers(USERDB_TARGETS)


def preload(cfg: Config) -> None:
    """Import the drivers ``cfg``'s passdb and userdb sections name (the auth services'
    ``prepare`` step: run in the master before it forks them, so the auth processes and
    their workers share those pages instead of importing after the fork)."""
    for kind, drivers in (("passdb", PASSDB_DRIVERS), ("userdb", USERDB_DRIVERS)):
        for section in cfg.sections(kind):
            name = str(section.get("driver"))
            if name in drivers:
                drivers[name]


__all__ = [
    "PASSDB_DRIVERS",
    "USERDB_DRIVERS",
    "DriverError",
    "Drivers",
    "PassdbDriver",
    "PassdbLookup",
    "UserdbDriver",
    "UserdbLookup",
    "preload",
]
