"""The passdb and userdb chains: databases tried in order with Dovecot's result semantics.

Each database's outcome picks an action from its ``result_success`` / ``result_failure`` /
``result_internalfail`` setting: ``return-ok``, ``return-fail``, ``return`` (stop with the
state so far), ``continue``, ``continue-ok``, ``continue-fail``. The state starts as failure.
``skip`` leaves a passdb out when the request is already (un)authenticated, a userdb when the
user was already (not) found; ``deny = yes`` turns a found user into a refusal; default and
override fields wrap what each database returns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from cote.auth import schemes
from cote.auth.cache import AuthCache
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
from cote.variables import VariableError

# How a password a passdb checked itself is kept in the auth cache (Dovecot keeps SHA1;
# cote a salted hash, still cheap to check).
CACHED_SCHEME = "SSHA512"
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


def _database(section: Section, drivers: Mapping[str, type], kind: str) -> Database:
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
# Told each database answer that is not OK (to log it as Dovecot does, per database).
Report = Callable[[Database, AuthRequest, PassdbLookup | UserdbLookup], None]
# auth_debug: told "start" before a database is asked, "found" with its answer, "end" after.
Trace = Callable[[Database, AuthRequest, str, PassdbLookup | UserdbLookup | None], None]


def _cache_key(kind: str, index: int, driver: PassdbDriver | UserdbDriver,
               request: AuthRequest) -> tuple[str, int, str] | None:
    if driver.cache_key is None:
        return None
    try:
        return (kind, index, request.expand(driver.cache_key))
    except VariableError:
        return None


def _negative_expired(cache: AuthCache | None, db: Database, index: int,
                      request: AuthRequest) -> bool:
    key = _cache_key("passdb", index, db.driver, request)
    return cache is None or key is None or cache.negative_expired(key)


def _cacheable(result: PassdbResult) -> bool:
    return result in (PassdbResult.OK, PassdbResult.USER_UNKNOWN)


async def _lookup_passdb(db: Database, index: int, request: AuthRequest,
                         cache: AuthCache | None, *, fresh: bool = False
                         ) -> tuple[PassdbLookup, bool]:
    """The database's answer, from the auth cache when it has it: (answer, came from cache)."""
    assert isinstance(db.driver, PassdbDriver)
    key = _cache_key("passdb", index, db.driver, request) if cache is not None else None
    if cache is not None and key is not None and not fresh:
        cached = cache.get(key)
        if isinstance(cached, PassdbLookup):
            return dataclasses.replace(cached, fields=dict(cached.fields)), True
    found = await db.driver.lookup(request)
    if cache is not None and key is not None:
        if found.result is PassdbResult.INTERNAL_FAILURE:
            stale = cache.stale(key)
            if isinstance(stale, PassdbLookup):
                return dataclasses.replace(stale, fields=dict(stale.fields)), True
        elif _cacheable(found.result):
            _put_passdb(cache, key, found, request)
    return found, False


def _put_passdb(cache: AuthCache, key: tuple[str, int, str], found: PassdbLookup,
                request: AuthRequest) -> None:
    size = len(found.password or "") + sum(len(k) + len(v or "")
                                            for k, v in found.fields.items())
    cache.put(key, dataclasses.replace(found, fields=dict(found.fields)),
              negative=found.result is PassdbResult.USER_UNKNOWN, user=request.user, size=size)


async def _authenticate(db: Database, index: int, request: AuthRequest, password: bytes, *,
                        cache: AuthCache | None, verify: Verify | None) -> PassdbLookup:
    """A passdb that checks the password itself (PAM, LDAP auth_bind), through the auth
    cache when it has a cache key: as Dovecot, a success is kept with a hash of the password
    that worked (checked against later logins), an unknown user as a negative entry; a
    password the entry does not know asks the database again, and when the database fails
    an entry, even expired, answers."""
    driver = db.driver
    assert isinstance(driver, PlaintextPassdb)
    key = _cache_key("passdb", index, driver, request) if cache is not None else None
    if cache is None or key is None:
        return await driver.authenticate(request, password)

    async def from_entry(entry: object) -> PassdbLookup | None:
        if not isinstance(entry, PassdbLookup):
            return None
        copy = dataclasses.replace(entry, fields=dict(entry.fields))
        if copy.result is not PassdbResult.OK or copy.password is None:
            return copy
        if verify is not None:
            result = await verify(copy, db)
        else:
            result = PassdbResult.OK if schemes.verify(copy.password, password) \
                else PassdbResult.PASSWORD_MISMATCH
        copy.password = None
        copy.result = result
        return copy

    cached = await from_entry(cache.get(key))
    if cached is not None and cached.result is not PassdbResult.PASSWORD_MISMATCH:
        return cached
    found = await driver.authenticate(request, password)
    if found.result is PassdbResult.INTERNAL_FAILURE:
        fallback = cached or await from_entry(cache.stale(key))
        if fallback is None or (fallback.result is PassdbResult.PASSWORD_MISMATCH
                                and cache.negative_expired(key)):
            return found
        return fallback
    if _cacheable(found.result):
        entry = dataclasses.replace(found, fields=dict(found.fields))
        if found.result is PassdbResult.OK and found.password is None:
            entry.password = schemes.generate(CACHED_SCHEME, password)
        _put_passdb(cache, key, entry, request)
    return found


async def run_passdbs(chain: list[Database], request: AuthRequest, verify: Verify | None,
                      password: bytes | None = None,
                      cache: AuthCache | None = None, *, masters: bool = False,
                      report: Report | None = None,
                      trace: Trace | None = None) -> PassdbOutcome:
    """Authenticate through the chain. ``verify`` checks a found password (None for lookups
    that only need the user to exist, such as PASS from the master socket); ``password`` is
    the plaintext for databases that check it themselves (PAM, LDAP auth_bind). With a
    ``cache``, databases that have a cache key answer from it (Dovecot's auth cache: a cached
    password that does not match is looked up again, so a changed password works at once).
    ``masters`` runs the ``master = yes`` passdbs instead (they only serve master logins)."""
    success = False
    last = PassdbOutcome(PassdbResult.USER_UNKNOWN, None, None)
    for index, db in enumerate(chain):
        if db.master != masters:
            continue  # master passdbs only serve "user*master" logins, and only them
        if (db.skip == "authenticated" and success) or \
                (db.skip == "unauthenticated" and not success):
            continue
        assert isinstance(db.driver, PassdbDriver)
        if trace is not None:
            trace(db, request, "start", None)
        checks_itself = cached = False
        if password is not None and isinstance(db.driver, PlaintextPassdb) and \
                db.driver.checks_password:
            found = await _authenticate(db, index, request, password, cache=cache,
                                          verify=verify)
            checks_itself = True
        else:
            found, cached = await _lookup_passdb(db, index, request, cache)
        if trace is not None:
            trace(db, request, "found", found)
        if report is not None and found.result is not PassdbResult.OK:
            report(db, request, found)
        result = found.result
        if result is PassdbResult.OK:
            if db.deny:
                result = PassdbResult.USER_DISABLED
                found.log = "User is in deny passdb"
            elif verify is not None and not checks_itself:
                result = await verify(found, db)
                if result is PassdbResult.PASSWORD_MISMATCH and cached:
                    # The password may have changed since it was cached: ask the database.
                    found, stale = await _lookup_passdb(db, index, request, cache, fresh=True)
                    result = found.result
                    if result is PassdbResult.OK:
                        result = await verify(found, db)
                    if stale and result is PassdbResult.PASSWORD_MISMATCH and \
                            _negative_expired(cache, db, index, request):
                        # the database failed and the entry is too old to say "mismatch"
                        result = PassdbResult.INTERNAL_FAILURE
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
        if trace is not None:
            trace(db, request, "end", found)
        if result in (PassdbResult.USER_DISABLED, PassdbResult.PASS_EXPIRED):
            if result is PassdbResult.PASS_EXPIRED:
                request.passdb_fields.setdefault("reason", "Password expired")  # as Dovecot
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


async def _lookup_userdb(db: Database, index: int, request: AuthRequest,
                         cache: AuthCache | None) -> UserdbLookup:
    assert isinstance(db.driver, UserdbDriver)
    key = _cache_key("userdb", index, db.driver, request) if cache is not None else None
    if cache is not None and key is not None:
        cached = cache.get(key)
        if isinstance(cached, UserdbLookup):
            return dataclasses.replace(cached, fields=dict(cached.fields))
    found = await db.driver.lookup(request)
    if cache is not None and key is not None and \
            found.result is PassdbResult.INTERNAL_FAILURE:
        stale = cache.stale(key)  # the database failed: an expired entry answers
        if isinstance(stale, UserdbLookup):
            return dataclasses.replace(stale, fields=dict(stale.fields))
    if cache is not None and key is not None and _cacheable(found.result):
        size = sum(len(k) + len(v or "") for k, v in found.fields.items())
        cache.put(key, dataclasses.replace(found, fields=dict(found.fields)),
                  negative=found.result is PassdbResult.USER_UNKNOWN, user=request.user,
                  size=size)
    return found


async def run_userdbs(chain: list[Database], request: AuthRequest,
                      cache: AuthCache | None = None, *,
                      report: Report | None = None,
                      trace: Trace | None = None) -> UserdbLookup:
    """Look the user up through the chain; fields of every database that found it merge."""
    found_any = False
    internal = False
    log = "unknown user"
    for index, db in enumerate(chain):
        if (db.skip == "found" and found_any) or (db.skip == "notfound" and not found_any):
            continue
        if trace is not None:
            trace(db, request, "start", None)
        found = await _lookup_userdb(db, index, request, cache)
        if trace is not None:
            trace(db, request, "found", found)
        if report is not None and found.result is not PassdbResult.OK:
            report(db, request, found)
        if trace is not None:
            trace(db, request, "end", found)
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
