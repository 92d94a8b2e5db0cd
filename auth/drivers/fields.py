"""What a passdb or userdb row means: Dovecot's special field names, shared by SQL and LDAP.

A passdb row's ``password`` is the stored password (``password_noscheme`` one that must not be
parsed for a ``{SCHEME}`` prefix), ``user`` renames the user (``username`` keeps the domain,
``domain`` keeps the name), ``nopassword`` accepts any password, ``userdb_*`` columns are the
prefetched userdb fields; every other non-NULL column is an extra field (bare when its value
is ``Y`` or empty). A userdb row's ``uid`` and ``gid`` may name a system user/group (turned
into numbers as Dovecot does).
"""

from __future__ import annotations

import grp
import pwd
from collections.abc import Iterable

from cote.auth.drivers.base import PassdbLookup
from cote.auth.mechanisms import PassdbResult
from cote.auth.request import AuthRequest

Row = Iterable[tuple[str, str | None]]


# Extra fields whose value Dovecot drops (a yes/no flag whatever the column says); any field
# whose value is "Y" or empty is sent bare too.
BARE = frozenset({"proxy", "proxy_maybe"})


class HostileValue(ValueError):
    """A value that cannot be sent to the database literally (NUL byte)."""


def rename(request: AuthRequest, name: str, value: str) -> None:
    if name == "username" and "@" not in value and "@" in request.user:
        value = value + request.user[request.user.index("@"):]
    elif name == "domain":
        value = request.user.partition("@")[0] + "@" + value
    if value and value != request.user:
        if not request.original_user:
            request.original_user = request.user
        request.user = value


def passdb_row(request: AuthRequest, row: Row, default_scheme: str, *,
               has_password: bool) -> PassdbLookup:
    password: str | None = None
    fields: dict[str, str | None] = {}
    renamed = False
    for name, value in row:
        if not name or value is None:
            continue
        if name == "password":
            password = value
        elif name == "password_noscheme":
            password = f"{{{default_scheme}}}{value}" if value.startswith("{") else value
        elif name in ("user", "username", "domain"):
            rename(request, name, value)
            renamed = True
        elif name.startswith("userdb_"):
            fields[name] = userdb_value(name[7:], value)
        else:
            fields[name] = None if value in ("Y", "") or name in BARE else value
    if renamed and all(k.startswith("userdb_") for k in fields):
        # Dovecot keeps the new name as a hidden extra field: with no visible one its OK
        # line ends in an empty field.
        fields[""] = None
    if not has_password:
        return PassdbLookup(PassdbResult.INTERNAL_FAILURE,
                            log="Password query must return a field named 'password'")
    if "nopassword" in fields:
        if password:
            return PassdbLookup(PassdbResult.INTERNAL_FAILURE,
                                log="nopassword set but password is non-empty")
        fields["nopassword"] = None
        return PassdbLookup(PassdbResult.OK, None, fields, default_scheme)
    if not password:
        return PassdbLookup(PassdbResult.PASSWORD_MISMATCH, fields=fields,
                            log="Empty password returned without nopassword")
    return PassdbLookup(PassdbResult.OK, password, fields, default_scheme)


def userdb_value(name: str, value: str) -> str:
    """``uid``/``gid`` given as names become numbers (unknown names stay as given)."""
    if name == "uid" and value and not value.isdigit():
        try:
            return str(pwd.getpwnam(value).pw_uid)
        except KeyError:
            return value
    if name == "gid" and value and not value.isdigit():
        try:
            return str(grp.getgrnam(value).gr_gid)
        except KeyError:
            return value
    return value


def userdb_row(request: AuthRequest, row: Row) -> dict[str, str | None]:
    fields: dict[str, str | None] = {}
    for name, value in row:
        if not name or value is None:
            continue
        if name == "user":
            rename(request, name, value)
            continue
        fields[name] = userdb_value(name, value)
    return fields
