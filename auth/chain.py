"""The passdb and userdb chains: databases tried in order with Dovecot's result semantics.

Each database's outcome picks an action from its ``result_success`` / ``result_failure`` /
``result_internalfail`` setting: ``return-ok``, ``return-fail``, ``return`` (stop with the
state so far), ``continue``, ``continue-ok``, ``continue-fail``. The state starts as failure.
``skip`` leaves a passdb out when the request is already (un)authenticated, a userdb when the
user was already (not) found; ``deny = yes`` turns a found user into a refusal; default and
override fields wrap what each database returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cote.auth.drivers import (
    PASSDB_DRIVERS,
    USERDB_DRIVERS,
    DriverError,
    PassdbDriver,
    PassdbLookup,
    UserdbDriver,
    UserdbLookup,
)
from cote.auth.drivers.plaintext import PlaintextPassdb
from cote.auth.mechanisms import PassdbResult
from cote.auth.request import AuthRequest, apply_fields
from cote.config import Config, Section

ACTIONS = ("return", "return-ok", "return-fail", "continue", "continue-ok", "continue-fail")


@dataclass
class Database:
    driver: PassdbDriver | UserdbDriver
    section: Section
    default_fields: str
    override_fields: str
    skip: str
    result_success: str
    result_failure: str
    result_internalfail: str
    deny: bool = False
    master: bool = False
    pass_: bool = False

    def action(self, result: PassdbResult) -> str:
        if result is PassdbResult.OK:
            return self.result_success
        if result is PassdbResult.INTERNAL_FAILURE:
            return self.result_internalfail
        return self.result_failure


def _database(section: Section, drivers: dict[str, type], kind: str) -> Database:
    name = str(section.get("driver"))
    cls = drivers.get(name)
    if cls is None:
        raise DriverError(f"{kind}: unknown driver {name!r} (cote has: {', '.join(drivers)})")
    db = Database(cls(str(section.get("args"))), section, str(section.get("default_fields")),
                  str(section.get("override_fields")), str(section.get("skip")),
                  str(section.get("result_success")), str(section.get("result_failure")),
                  str(section.get("result_internalfail")))
    if kind == "passdb":
        db.deny = bool(section.get("deny"))
        db.master = bool(section.get("master"))
        db.pass_ = bool(section.get("pass"))
    return db


def passdbs(cfg: Config) -> list[Database]:
    return [_database(s, PASSDB_DRIVERS, "passdb") for s in cfg.sections("passdb")]


def userdbs(cfg: Config) -> list[Database]:
    return [_database(s, USERDB_DRIVERS, "userdb") for s in cfg.sections("userdb")]


@dataclass
class PassdbOutcome:
    result: PassdbResult
    lookup: PassdbLookup | None  # the database answer that decided, when there was one
    database: Database | None


Verify = Callable[[PassdbLookup, Database], Awaitable[PassdbResult]]


async def run_passdbs(chain: list[Database], request: AuthRequest, verify: Verify | None,
                      password: bytes | None = None) -> PassdbOutcome:
    """Authenticate through the chain. ``verify`` checks a found password (None for lookups
    that only need the user to exist, such as PASS from the master socket); ``password`` is
    the plaintext for databases that check it themselves (PAM, LDAP auth_bind)."""
    success = False
    last = PassdbOutcome(PassdbResult.USER_UNKNOWN, None, None)
    for db in chain:
        if db.master:
            continue  # master passdbs only serve "user*master" logins
        if (db.skip == "authenticated" and success) or \
                (db.skip == "unauthenticated" and not success):
            continue
        assert isinstance(db.driver, PassdbDriver)
        checks_itself = False
        if password is not None and isinstance(db.driver, PlaintextPassdb):
            found = await db.driver.authenticate(request, password)
            checks_itself = True
        else:
            found = await db.driver.lookup(request)
        result = found.result
        if result is PassdbResult.OK:
            if db.deny:
                result = PassdbResult.USER_DISABLED
                found.log = "User is in deny passdb"
            elif verify is not None and not checks_itself:
                result = await verify(found, db)
        if result is PassdbResult.OK:
            # Only a passing database's fields count (Dovecot: a wrong password imports none;
            # a credentials lookup passes here, so a mechanism failing afterwards, e.g.
            # CRAM-MD5 with a wrong digest, still FAILs with the user's fields).
            fields: dict[str, str | None] = {}
            apply_fields(fields, db.default_fields, db.override_fields, request, found.fields)
            for key, value in fields.items():
                if key.startswith("userdb_"):
                    request.userdb_fields[key[7:]] = value
                elif key != "password":
                    request.passdb_fields[key] = value
        last = PassdbOutcome(result, found, db)
        if result in (PassdbResult.USER_DISABLED, PassdbResult.PASS_EXPIRED):
            return last  # Dovecot: a disabled/expired account ends the chain whatever follows
        action = db.action(result)
        if action == "return-ok":
            return PassdbOutcome(PassdbResult.OK, found, db)
        if action == "return-fail":
            return last if result is not PassdbResult.OK else \
                PassdbOutcome(PassdbResult.PASSWORD_MISMATCH, found, db)
        if action == "return":
            break
        if action == "continue-ok":
            success = True
        elif action == "continue-fail":
            success = False
        # "continue" leaves the state as it was
    if success:
        return PassdbOutcome(PassdbResult.OK, last.lookup, last.database)
    return last


async def run_userdbs(chain: list[Database], request: AuthRequest) -> UserdbLookup:
    """Look the user up through the chain; fields of every database that found it merge."""
    found_any = False
    internal = False
    log = "unknown user"
    for db in chain:
        if (db.skip == "found" and found_any) or (db.skip == "notfound" and not found_any):
            continue
        assert isinstance(db.driver, UserdbDriver)
        found = await db.driver.lookup(request)
        if found.result is PassdbResult.OK:
            apply_fields(request.userdb_fields, db.default_fields, db.override_fields,
                         request, found.fields)
            found_any = True
        elif found.result is PassdbResult.INTERNAL_FAILURE:
            internal = True
            log = found.log
        action = db.action(found.result)
        if action in ("return-ok", "return-fail", "return"):
            if action == "return-fail":
                found_any = False
            break
        if action == "continue-ok":
            found_any = True
        elif action == "continue-fail":
            found_any = False
    if found_any:
        return UserdbLookup(PassdbResult.OK, dict(request.userdb_fields))
    if internal:
        return UserdbLookup(PassdbResult.INTERNAL_FAILURE, log=log)
    return UserdbLookup(PassdbResult.USER_UNKNOWN, log=log)
