"""passdb and userdb drivers behind one small interface (see ``base``)."""

from __future__ import annotations

from cote.auth.drivers.base import (
    DriverError,
    PassdbDriver,
    PassdbLookup,
    UserdbDriver,
    UserdbLookup,
)
from cote.auth.drivers.checkpassword import CheckpasswordPassdb, CheckpasswordUserdb
from cote.auth.drivers.ldap import LdapPassdb, LdapUserdb
from cote.auth.drivers.oauth2 import OAuth2Passdb
from cote.auth.drivers.pam import PamPassdb
from cote.auth.drivers.passwd_file import PasswdFilePassdb, PasswdFileUserdb
from cote.auth.drivers.prefetch import PrefetchUserdb
from cote.auth.drivers.sql import SqlPassdb, SqlUserdb
from cote.auth.drivers.static import StaticPassdb, StaticUserdb
from cote.auth.drivers.system import PasswdUserdb, ShadowPassdb

PASSDB_DRIVERS: dict[str, type[PassdbDriver]] = {
    "passwd-file": PasswdFilePassdb, "static": StaticPassdb, "sql": SqlPassdb,
    "ldap": LdapPassdb, "pam": PamPassdb, "shadow": ShadowPassdb,
    "checkpassword": CheckpasswordPassdb, "oauth2": OAuth2Passdb,
}
USERDB_DRIVERS: dict[str, type[UserdbDriver]] = {
    "passwd-file": PasswdFileUserdb, "static": StaticUserdb, "sql": SqlUserdb,
    "prefetch": PrefetchUserdb, "ldap": LdapUserdb,
    "passwd": PasswdUserdb, "checkpassword": CheckpasswordUserdb,
}

__all__ = ["PASSDB_DRIVERS", "USERDB_DRIVERS", "DriverError", "PassdbDriver", "PassdbLookup",
           "UserdbDriver", "UserdbLookup"]
