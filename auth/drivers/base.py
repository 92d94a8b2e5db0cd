"""The driver interface: a passdb finds a user's password (and extra fields), a userdb finds
a user's fields. Drivers are async so SQL and LDAP can be; blocking ones (files, PAM) keep
their blocking parts short or hand them to a worker."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from cote.auth.mechanisms import PassdbResult
from cote.auth.request import AuthRequest


class DriverError(Exception):
    """A driver's configuration cannot work (bad args, unreadable file at start-up)."""


@dataclass
class PassdbLookup:
    result: PassdbResult
    password: str | None = None  # stored, maybe "{SCHEME}…"; None with nopassword
    fields: dict[str, str | None] = field(default_factory=dict)
    default_scheme: str = "CRYPT"
    log: str = ""  # auth_verbose reason when not OK ("unknown user", …)
    log_plain: bool = False  # log ``log`` without the "driver(user,ip)" prefix
    debug: tuple[str, ...] = ()  # auth_debug lines about the lookup ("lookup: user=… file=…")


@dataclass
class UserdbLookup:
    result: PassdbResult  # OK, USER_UNKNOWN or INTERNAL_FAILURE
    fields: dict[str, str | None] = field(default_factory=dict)
    log: str = ""
    log_plain: bool = False
    debug: tuple[str, ...] = ()


class PassdbDriver(abc.ABC):
    name: str
    # The request variables its answer depends on (a % template): set by slow drivers (SQL,
    # LDAP) so the auth cache may keep their answers; None (fast drivers): never cached.
    cache_key: str | None = None

    def __init__(self, args: str) -> None:
        self.args = args

    @abc.abstractmethod
    async def lookup(self, request: AuthRequest) -> PassdbLookup: ...


class UserdbDriver(abc.ABC):
    name: str
    cache_key: str | None = None  # as for PassdbDriver

    def __init__(self, args: str) -> None:
        self.args = args

    @abc.abstractmethod
    async def lookup(self, request: AuthRequest) -> UserdbLookup: ...

    def can_iterate(self) -> bool:
        return False

    def iterate(self) -> AsyncIterator[str]:
        """User names, for LIST (``coteadm user '*'``); drivers that can iterate override."""
        return _no_users()


async def _no_users() -> AsyncIterator[str]:
    names: tuple[str, ...] = ()
    for name in names:
        yield name


def split_args(args: str) -> tuple[dict[str, str], list[str]]:
    """``key=value`` options and the remaining words (e.g. a file path)."""
    options: dict[str, str] = {}
    rest: list[str] = []
    for word in args.split():
        key, eq, value = word.partition("=")
        if eq and not word.startswith("/"):
            options[key] = value
        else:
            rest.append(word)
    return options, rest
