"""The auth daemon's logic, independent of sockets: SASL conversations and lookups.

A conversation drives a mechanism state machine (``cote.auth.mechanisms``): when it asks to
verify a password or fetch credentials, the passdb chain answers; successes are remembered for
a while so a mail process can confirm them (auth-master REQUEST with the login process's pid,
request id and this daemon's cookie); failures are answered after ``auth_failure_delay``.
The socket servers in ``cote.auth.service`` only move bytes to and from here.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import hashlib
import hmac
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from cote.auth import chain, schemes
from cote.auth.cache import AuthCache
from cote.auth.drivers import PassdbLookup, UserdbDriver, UserdbLookup
from cote.auth.mechanisms import (
    Challenge,
    Failure,
    LookupCredentials,
    Mechanism,
    MechanismContext,
    PassdbResult,
    Step,
    Success,
    UnknownMechanism,
    VerifyPlain,
    advertised,
    create,
)
from cote.auth.protocol.auth_client import MechanismInfo
from cote.auth.request import AuthRequest
from cote.config import Config
from cote.log import Logger
from cote.variables import VariableError, compile_template

LOGIN_REQUEST_TTL = 180.0  # how long a mail process has to REQUEST a finished login


@dataclass
class PendingLogin:
    request: AuthRequest
    expires: float


@dataclass(frozen=True, slots=True)
class Reply:
    """What a conversation says: CONT (``challenge``), OK or FAIL."""

    kind: str  # "cont" | "ok" | "fail"
    challenge: bytes = b""
    user: str = ""
    fields: tuple[tuple[str, str | None], ...] = ()
    code: str | None = None
    reason: str | None = None


class UserdbAnswer:
    FOUND, NOTFOUND, FAIL = "found", "notfound", "fail"


class AuthEngine:
    def __init__(self, cfg: Config, log: Logger) -> None:
        self.cfg = cfg
        self.log = log
        self.passdbs = chain.passdbs(cfg)
        self.userdbs = chain.userdbs(cfg)
        names = str(cfg.get("auth_mechanisms")).upper().split()
        self.mechanisms: list[MechanismInfo] = advertised(names)
        self.cookie = os.urandom(16)
        self.logins: dict[tuple[int, int], PendingLogin] = {}
        self.failure_delay = float(cfg.get("auth_failure_delay"))
        self.debug_passwords = bool(cfg.get("auth_debug_passwords"))
        self.debug = bool(cfg.get("auth_debug")) or self.debug_passwords
        self.verbose = bool(cfg.get("auth_verbose")) or self.debug
        self.verbose_passwords = str(cfg.get("auth_verbose_passwords"))
        self.username_format = compile_template(str(cfg.get("auth_username_format")))
        self.username_chars = frozenset(str(cfg.get("auth_username_chars")))
        translation = str(cfg.get("auth_username_translation"))
        self.translation = str.maketrans(translation[0::2], translation[1::2]) \
            if len(translation) >= 2 else None
        self.default_realm = str(cfg.get("auth_default_realm"))
        self.realms = tuple(str(cfg.get("auth_realms")).split())
        self.anonymous_username = str(cfg.get("auth_anonymous_username"))
        self.master_separator = str(cfg.get("auth_master_user_separator"))[:1]
        self.username_from_cert = bool(cfg.get("auth_ssl_username_from_cert"))
        self.require_client_cert = bool(cfg.get("auth_ssl_require_client_cert"))
        self.start_time = time.time()
        self.next_cuid = 1
        size = int(cfg.get("auth_cache_size"))
        self.cache = AuthCache(size, float(cfg.get("auth_cache_ttl")),
                               float(cfg.get("auth_cache_negative_ttl"))) if size > 0 else None

    # -- user names ------------------------------------------------------------------------
    def normalize(self, name: str) -> str | None:
        """auth_username_translation, auth_username_chars, auth_default_realm and
        auth_username_format, in Dovecot's order; None for a name that is not allowed."""
        if self.translation:
            name = name.translate(self.translation)
        if self.username_chars and any(c not in self.username_chars for c in name):
            return None
        if self.default_realm and "@" not in name:
            name = f"{name}@{self.default_realm}"
        try:
            request = AuthRequest(name)
            return self.username_format.expand(request.values())
        except VariableError:
            return None

    def _disallowed(self, name: str) -> str | None:
        """Dovecot's auth_verbose reason for a character auth_username_chars refuses."""
        if self.translation:
            name = name.translate(self.translation)
        if not self.username_chars:
            return None
        bad = next((c for c in name if c not in self.username_chars), None)
        if bad is None:
            return None
        shown = "".join(c if c.isprintable() else "?" for c in name)
        return (f"Username character disallowed by auth_username_chars: "
                f"0x{ord(bad):02x} (username: {shown})")

    # -- SASL conversations ----------------------------------------------------------------
    def mechanism_info(self, name: str) -> MechanismInfo | None:
        return next((m for m in self.mechanisms if m.name == name.upper()), None)

    async def conversation(self, mechanism: str, initial: bytes | None, request: AuthRequest,
                           *, final_resp_ok: bool, cuid: int,
                           responses: Callable[[], Awaitable[bytes]]) -> AsyncIterator[Reply]:
        """Run one AUTH request; yields CONT replies and finally OK or FAIL. ``responses``
        returns the client's next CONT data."""
        info = self.mechanism_info(mechanism)
        if info is None:
            yield Reply("fail", reason="Unsupported authentication mechanism")
            return
        # disable_plaintext_auth is the login processes' to enforce: Dovecot 2.3's auth daemon
        # accepts plaintext mechanisms from any auth client (checked against it).
        if self.require_client_cert and not request.valid_client_cert:
            yield Reply("fail", reason="Client didn't present valid SSL certificate")
            return
        cert_username = request.cert_username if self.username_from_cert else None
        try:
            mech = create(info.name, MechanismContext(
                service=request.service, final_resp_ok=final_resp_ok, realms=self.realms,
                anonymous_username=self.anonymous_username, connect_uid=cuid,
                start_time=self.start_time, cert_username=cert_username))
        except UnknownMechanism:
            yield Reply("fail", reason="Unsupported authentication mechanism")
            return
        request.mechanism = info.name
        step = mech.start(initial)
        while True:
            if isinstance(step, Challenge):
                yield Reply("cont", challenge=step.data)
                step = mech.respond(await responses())
            elif isinstance(step, VerifyPlain | LookupCredentials):
                step = await self._passdb_step(mech, step, request)
            elif isinstance(step, Success):
                yield self._succeeded(step, request)
                return
            else:
                assert isinstance(step, Failure)
                yield await self._failed(step, request)
                return

    async def _passdb_step(self, mech: Mechanism, step: VerifyPlain | LookupCredentials,
                           request: AuthRequest) -> Step:
        name, login_user = step.user, step.authzid
        sep = self.master_separator
        if sep and sep in name:
            # "user*master": the master user's password logs in as user (an authzid wins)
            wanted, _, name = name.partition(sep)
            login_user = login_user or wanted
        given = name
        if self.username_from_cert and request.cert_username is not None:
            # As Dovecot: the certificate's name overrides the one the mechanism gave
            # (EXTERNAL gives none), still translated and checked like any name.
            given = "" if request.mechanism == "EXTERNAL" else name
            name, request.cert_login = request.cert_username, True
        problem = self._disallowed(name)
        if problem is not None:
            # Dovecot names the user "?" in this line and sends the name back as given.
            request.user = "?"
            self._verbose(request, request.mechanism.lower(), problem)
            request.user = request.original_user = name
            request.show_original = True
            return self._answer(mech, step, PassdbResult.USER_UNKNOWN)
        user = self.normalize(name)
        if user is None:
            self._verbose(request, "passdb", f"Invalid username: {name}")
            return self._answer(mech, step, PassdbResult.USER_UNKNOWN)
        request.original_user = given
        request.user = user
        if login_user:
            if not any(db.master for db in self.passdbs):
                self._verbose(request, "passdb", "Attempted master login with no master passdbs")
                return self._answer(mech, step, PassdbResult.USER_UNKNOWN)
            target = self.normalize(login_user)
            if target is None:
                self._verbose(request, "passdb", f"Invalid username: {login_user}")
                return self._answer(mech, step, PassdbResult.USER_UNKNOWN)
            request.master_lookup = True
            try:
                answer = await self._run_passdbs(mech, step, request, masters=True)
            finally:
                request.master_lookup = False
            if answer[0] is not PassdbResult.OK:
                return self._answer(mech, step, answer[0])
            # As Dovecot: the master user is now logged in as the wanted user.
            request.master_user, request.user = user, target
            self._verbose(None, "", f"Master user logging in as {target}")
            if self._master_passes(answer[1]):
                request.passdb_fields.clear()
                outcome = await chain.run_passdbs(self.passdbs, request, None, cache=self.cache,
                                                  report=self._report, trace=self._trace)
                if outcome.result is not PassdbResult.OK:
                    result = PassdbResult.INTERNAL_FAILURE if \
                        outcome.result is PassdbResult.INTERNAL_FAILURE else \
                        PassdbResult.AUTHZ_FAILED
                    return self._answer(mech, step, result)
            return self._answer(mech, step, PassdbResult.OK, answer[2])
        return self._answer(mech, step, *(await self._run_passdbs(mech, step, request))[::2])

    @staticmethod
    def _master_passes(outcome: chain.PassdbOutcome | None) -> bool:
        return outcome is not None and outcome.database is not None and outcome.database.pass_

    @staticmethod
    def _answer(mech: Mechanism, step: VerifyPlain | LookupCredentials, result: PassdbResult,
                data: bytes | None = None) -> Step:
        if isinstance(step, VerifyPlain):
            return mech.verified(result)
        return mech.credentials(result, data if result is PassdbResult.OK else None)

    async def _run_passdbs(self, mech: Mechanism, step: VerifyPlain | LookupCredentials,
                           request: AuthRequest, *, masters: bool = False
                           ) -> tuple[PassdbResult, chain.PassdbOutcome | None, bytes | None]:
        """Verify the password (or fetch the credentials the mechanism asked for) through the
        normal or the master passdbs: (result, the chain's outcome, credentials)."""
        if isinstance(step, VerifyPlain):
            password = step.password
            request.password = password

            async def verify(found: PassdbLookup, db: chain.Database) -> PassdbResult:
                return await self._verify_password(found, password, request, db)

            outcome = await chain.run_passdbs(self.passdbs, request, verify, password,
                                              self.cache, masters=masters, report=self._report,
                                              trace=self._trace)
            return outcome.result, outcome, None
        request.credentials_scheme = step.scheme
        outcome = await chain.run_passdbs(self.passdbs, request, None, cache=self.cache,
                                          masters=masters, report=self._report,
                                          trace=self._trace)
        if outcome.result is not PassdbResult.OK or outcome.lookup is None:
            return outcome.result, outcome, None
        found = outcome.lookup
        if found.password is None:
            return PassdbResult.SCHEME_NOT_AVAILABLE, outcome, None
        try:
            data = schemes.credentials(found.password, step.scheme, user=request.user,
                                       default_scheme=found.default_scheme)
        except schemes.SchemeError as e:
            self._verbose(request, outcome.database, str(e))
            return PassdbResult.SCHEME_NOT_AVAILABLE, outcome, None
        if self.debug_passwords:
            self.debug_line(None, "", f"Credentials: {data.hex()}")
        return PassdbResult.OK, outcome, data

    def _report(self, db: chain.Database, request: AuthRequest,
                found: PassdbLookup | UserdbLookup) -> None:
        """A database's answer that is not OK, as Dovecot logs it: backend errors whatever
        auth_verbose says, "unknown user" and the driver's reasons with auth_verbose."""
        if found.result is PassdbResult.INTERNAL_FAILURE:
            self._verbose(request, db, found.log, error=True)
        elif found.log_plain:
            self._verbose(None, db, found.log)
        elif found.log == "unknown user":
            self._verbose(request, db, self._with_password("unknown user", request, db))
        elif found.log:
            self._verbose(request, db, found.log)

    def _trace(self, db: chain.Database, request: AuthRequest, event: str,
               found: PassdbLookup | UserdbLookup | None) -> None:
        """auth_debug lines around each database, as Dovecot writes them."""
        if not self.debug:
            return
        kind = "passdb" if db in self.passdbs else "userdb"
        if event == "start":
            self.debug_line(request, db, f"Performing {kind} lookup")
        elif event == "found" and found is not None:
            for line in found.debug:
                self.debug_line(request, db, line)
        elif event == "end":
            if self.debug_passwords and isinstance(found, PassdbLookup):
                self._debug_generated(request, db, found)
            self.debug_line(request, db, f"Finished {kind} lookup")

    def _debug_generated(self, request: AuthRequest, db: chain.Database,
                         found: PassdbLookup) -> None:
        """auth_debug_passwords: a mechanism's credentials made from a plaintext password."""
        wanted = request.credentials_scheme
        if found.result is not PassdbResult.OK or not wanted or found.password is None:
            return
        scheme, raw = schemes.split_stored(found.password, found.default_scheme)
        if scheme.upper() in ("PLAIN", "CLEAR", "CLEARTEXT") and wanted.upper() != "PLAIN":
            self.debug_line(request, db, f"Generating {wanted} from user '{request.user}', "
                                         f"password '{raw}'")

    def debug_line(self, request: AuthRequest | None, source: object, text: str) -> None:
        if not self.debug:
            return
        name = source if isinstance(source, str) else \
            (source.driver.name if isinstance(source, chain.Database) else "auth")
        self.log.write("D", f"{name}({request.log_name()}): {text}" if request else text)

    def _with_password(self, text: str, request: AuthRequest,
                       db: chain.Database | None = None) -> str:
        """auth_verbose_passwords: the given password (or its SHA1, maybe cut) after ``text``
        (with no password to show Dovecot still adds the space), and whether another passdb
        follows this one."""
        mode = self.verbose_passwords
        if mode in ("", "no"):
            return text
        password = request.password
        if password is None:
            shown = ""
        elif mode == "plain":
            shown = f"(given password: {password.decode('utf-8', 'replace')})"
        else:
            digest = hashlib.sha1(password, usedforsecurity=False).hexdigest()
            _, _, cut = mode.partition(":")
            if cut.isdigit() and int(cut) > 0:
                digest = digest[:int(cut)]
            shown = f"(SHA1 of given password: {digest})"
        text = f"{text} {shown}"
        if db is not None and self._next_passdb(db):
            text += " - trying the next passdb"
        return text

    def _next_passdb(self, db: chain.Database) -> bool:
        """Whether a passdb of the same kind (master or not) follows ``db``."""
        if db not in self.passdbs:
            return False
        later = self.passdbs[self.passdbs.index(db) + 1:]
        return any(other.master == db.master for other in later)

    async def _verify_password(self, found: PassdbLookup, password: bytes,
                               request: AuthRequest, db: chain.Database) -> PassdbResult:
        if found.password is None:  # nopassword
            return PassdbResult.OK
        stored = found.password
        try:
            if schemes.is_expensive(stored, default_scheme=found.default_scheme):
                ok = await asyncio.get_running_loop().run_in_executor(
                    None, lambda: schemes.verify(stored, password, user=request.user,
                                                 default_scheme=found.default_scheme))
            else:
                ok = schemes.verify(stored, password, user=request.user,
                                    default_scheme=found.default_scheme)
        except schemes.SchemeError as e:
            self._verbose(request, db, str(e), error=True)
            return PassdbResult.INTERNAL_FAILURE
        if not ok:
            self._verbose(request, db, self._with_password("Password mismatch", request, db))
            if self.debug_passwords:
                scheme, raw = schemes.split_stored(stored, found.default_scheme)
                given = password.decode("utf-8", "replace")
                self.debug_line(request, db, f"{scheme}({given}) != '{raw}'")
            return PassdbResult.PASSWORD_MISMATCH
        return PassdbResult.OK

    def _succeeded(self, step: Success, request: AuthRequest) -> Reply:
        if not request.original_user and not request.cert_login:
            # Mechanisms that never consult the passdb (ANONYMOUS, EXTERNAL) name the user.
            request.user = step.user
        fields: list[tuple[str, str | None]] = [
            (k, v) for k, v in request.passdb_fields.items()
            if k not in ("nopassword", "password", "user")]
        fields += list(step.fields)
        if _shows_original(request, request.user):
            fields.append(("original_user", request.original_user))
        if request.master_user:
            fields.append(("auth_user", request.master_user))
        proxying = "proxy" in request.passdb_fields or "proxy_maybe" in request.passdb_fields
        if proxying and "pass" not in request.passdb_fields and request.password is not None:
            fields.append(("pass", request.password.decode("utf-8", "surrogateescape")))
        request.password = None
        if step.final is not None:
            fields.append(("resp", base64.b64encode(step.final).decode("ascii")))
        request.authenticated = True
        return Reply("ok", user=request.user, fields=tuple(fields))

    async def _failed(self, step: Failure, request: AuthRequest) -> Reply:
        request.password = None
        if step.log:
            self._verbose(request, request.mechanism.lower(), step.log)
        if self.failure_delay > 0 and step.code != "temp_fail":
            await asyncio.sleep(self.failure_delay)
        # Dovecot names the user as the passdb saw it, and the login name when it differs.
        user = request.user or step.user or ""
        fields = [(k, v) for k, v in request.passdb_fields.items()
                  if k not in ("nopassword", "password", "user")]
        code = step.code
        if _shows_original(request, user):
            fields.append(("original_user", request.original_user))
        elif step.user == "" and not request.user:
            # An empty login name (PLAIN's "\0\0pw"): Dovecot names it, empty, twice.
            fields = [("user", ""), ("original_user", ""), *fields]
        if request.master_user:
            fields.append(("auth_user", request.master_user))
        return Reply("fail", user=user, fields=tuple(fields), code=code, reason=step.reason)

    def _verbose(self, request: AuthRequest | None, source: object, text: str,
                 error: bool = False) -> None:
        if not (self.verbose or error):
            return
        name = source if isinstance(source, str) else \
            (source.driver.name if isinstance(source, chain.Database) else "auth")
        line = f"{name}({request.log_name()}): {text}" if request is not None else text
        (self.log.error if error else self.log.info)(line)

    # -- the login registry (for REQUEST) ------------------------------------------------------
    def remember_login(self, client_pid: int, request_id: int, request: AuthRequest) -> None:
        now = time.monotonic()
        # Entries are kept in insertion order and share one TTL, so the expired ones are at
        # the front: drop them from there (a scan of every entry made each OK cost O(n)).
        logins = self.logins
        while logins:
            oldest = next(iter(logins))
            if logins[oldest].expires >= now:
                break
            del logins[oldest]
        key = (client_pid, request_id)
        logins.pop(key, None)  # a reused id goes to the back with its new expiry
        logins[key] = PendingLogin(request, now + LOGIN_REQUEST_TTL)

    def take_login(self, client_pid: int, request_id: int, cookie_hex: str
                   ) -> AuthRequest | None:
        try:
            cookie = bytes.fromhex(cookie_hex)
        except ValueError:
            return None
        if not hmac.compare_digest(cookie, self.cookie):
            return None
        pending = self.logins.pop((client_pid, request_id), None)
        if pending is None or pending.expires < time.monotonic():
            return None
        return pending.request

    # -- lookups for the master/userdb sockets ---------------------------------------------------
    async def userdb(self, request: AuthRequest) -> tuple[str, dict[str, str | None], str]:
        """(UserdbAnswer, fields, log text)."""
        result = await chain.run_userdbs(self.userdbs, request, self.cache, report=self._report,
                                         trace=self._trace)
        if result.result is PassdbResult.OK:
            return UserdbAnswer.FOUND, result.fields, ""
        if result.result is PassdbResult.INTERNAL_FAILURE:
            return UserdbAnswer.FAIL, {}, result.log
        return UserdbAnswer.NOTFOUND, {}, result.log

    async def passdb(self, request: AuthRequest) -> tuple[str, dict[str, str | None]]:
        outcome = await chain.run_passdbs(self.passdbs, request, None, cache=self.cache,
                                          report=self._report, trace=self._trace)
        if outcome.result is PassdbResult.OK and outcome.lookup is not None:
            # extra fields only: Dovecot never sends the stored password over this socket
            return UserdbAnswer.FOUND, dict(request.passdb_fields)
        if outcome.result is PassdbResult.INTERNAL_FAILURE:
            return UserdbAnswer.FAIL, {}
        return UserdbAnswer.NOTFOUND, {}

    async def list_users(self, mask: str) -> AsyncIterator[str]:
        seen: set[str] = set()
        for db in self.userdbs:
            driver = db.driver
            if isinstance(driver, UserdbDriver) and driver.can_iterate():
                async for name in driver.iterate():
                    if name not in seen and fnmatch.fnmatchcase(name, mask or "*"):
                        seen.add(name)
                        yield name

    def new_cuid(self) -> int:
        cuid, self.next_cuid = self.next_cuid, self.next_cuid + 1
        return cuid



def _shows_original(request: AuthRequest, user: str) -> bool:
    """Dovecot adds original_user= when the login name differs from the final one (an empty
    one too, after a certificate named the user)."""
    return request.show_original or (request.original_user != user and (
        bool(request.original_user) or request.cert_login))


def flush_cache(engine: AuthEngine, users: tuple[str, ...]) -> int:
    """CACHE-FLUSH: how many entries were dropped (0 without a cache, as Dovecot answers)."""
    if engine.cache is None:
        return 0
    return engine.cache.flush(engine.normalize(u) or u for u in users)
