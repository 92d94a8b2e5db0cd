"""``driver = ldap``: passdb/userdb lookups in a directory, configured by an unchanged
``dovecot-ldap.conf.ext`` (``args``), with ldap3.

Searches run in a small thread pool, each thread with its own bound connection (``dn`` /
``dnpass``, or SASL EXTERNAL with ``sasl_bind``; StartTLS with ``tls = yes``), so lookups
run concurrently up to ``LDAP_THREADS`` and the auth event loop never blocks (``blocking =
yes`` is accepted: every LDAP call here already runs outside the event loop). A lost
connection is reopened once within the same lookup (slapd restarted); when the directory is
down lookups fail at once (``temp_fail``) and later ones reconnect. ``auth_bind = yes`` checks
the password by binding as the user (found by ``pass_filter``, or ``auth_bind_userdn``) on a
connection of its own.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import ldap3
from ldap3.core.exceptions import LDAPException

from cote.auth import schemes
from cote.auth.cache import cache_key_template
from cote.auth.drivers import ldapconf
from cote.auth.drivers.base import DriverError, PassdbLookup, UserdbDriver, UserdbLookup
from cote.auth.drivers.fields import passdb_row, userdb_row
from cote.auth.drivers.plaintext import PlaintextPassdb
from cote.auth.drivers.sqlbackends import ConnectError, ConnectGate, limit_malloc_arenas
from cote.auth.mechanisms import PassdbResult
from cote.auth.request import AuthRequest
from cote.variables import VariableError, compile_template

LDAP_THREADS = 5
CONNECT_TIMEOUT = 5
RECEIVE_TIMEOUT = 10
SCOPES = {"base": ldap3.BASE, "onelevel": ldap3.LEVEL, "subtree": ldap3.SUBTREE}
DEREFS = {"never": ldap3.DEREF_NEVER, "searching": ldap3.DEREF_SEARCH,
          "finding": ldap3.DEREF_BASE, "always": ldap3.DEREF_ALWAYS}
TLS_REQUIRE = {"never": ssl.CERT_NONE, "allow": ssl.CERT_NONE, "try": ssl.CERT_OPTIONAL,
               "demand": ssl.CERT_REQUIRED, "hard": ssl.CERT_REQUIRED, "": ssl.CERT_REQUIRED}

T = TypeVar("T")


class LdapError(ConnectError):
    """The directory could not answer (down, connection lost, search error)."""


class Directory:
    """One ``.conf.ext`` file's directory: settings, servers and per-thread connections."""

    def __init__(self, path: str) -> None:
        self.settings = s = ldapconf.load(path)
        self.default_scheme = s["default_pass_scheme"]
        tls = None
        if is_tls_configured(s):
            tls = ldap3.Tls(validate=TLS_REQUIRE.get(s["tls_require_cert"], ssl.CERT_REQUIRED),
                            ca_certs_file=s["tls_ca_cert_file"] or None,
                            ca_certs_path=s["tls_ca_cert_dir"] or None,
                            local_certificate_file=s["tls_cert_file"] or None,
                            local_private_key_file=s["tls_key_file"] or None,
                            ciphers=s["tls_cipher_suite"] or None)
        urls = s["uris"].split() or [f"ldap://{h}" for h in s["hosts"].split()]
        # Tried in order, each connect with fresh Server objects: ldap3's ServerPool sleeps
        # 10 s when every server fails, and a Server remembers a refused address as invalid.
        self.urls = urls
        self.tls = tls
        self.version = int(s["ldap_version"] or "3")
        self.start_tls = ldapconf.is_yes(s["tls"])
        self.scope = SCOPES[s["scope"]]
        self.deref = DEREFS[s["deref"]]
        self.auth_bind = ldapconf.is_yes(s["auth_bind"])
        self.pass_attrs = ldapconf.parse_attrs(s["pass_attrs"])
        self.user_attrs = ldapconf.parse_attrs(s["user_attrs"])
        self.iterate_attrs = ldapconf.parse_attrs(s["iterate_attrs"])
        limit_malloc_arenas()
        self.pool = ThreadPoolExecutor(max_workers=LDAP_THREADS, thread_name_prefix="auth-ldap")
        self.local = threading.local()
        self.gate = ConnectGate(LdapError)

    # -- connections (pool threads only) -----------------------------------------------------
    def _open(self, user: str | None, password: str | None, *, sasl: bool) -> Any:
        self.gate.check()
        kwargs: dict[str, Any] = {"version": self.version, "receive_timeout": RECEIVE_TIMEOUT,
                                  "raise_exceptions": False, "read_only": True}
        if sasl:
            s = self.settings
            mech = (s["sasl_mech"] or ldap3.EXTERNAL).upper()
            authz = s["sasl_authz_id"]
            # EXTERNAL's credentials are the authzid (empty: the TLS/peer identity); the
            # password mechanisms authenticate as dn/dnpass.
            creds: object = authz
            if mech == "DIGEST-MD5":
                creds = (s["sasl_realm"] or None, s["dn"], s["dnpass"], authz or None)
            elif mech == "PLAIN":
                creds = (authz or None, s["dn"], s["dnpass"])
            kwargs.update(authentication=ldap3.SASL, sasl_mechanism=mech,
                          sasl_credentials=creds)
        elif user:
            kwargs.update(user=user, password=password or "", authentication=ldap3.SIMPLE)
        try:
            conn = None
            error: Exception = LdapError("Can't connect to server")
            for url in self.urls:
                try:
                    server = ldap3.Server(url, get_info=ldap3.NONE, tls=self.tls,
                                          connect_timeout=CONNECT_TIMEOUT)
                    conn = ldap3.Connection(server, **kwargs)
                    conn.open()
                except (LDAPException, OSError) as e:
                    error = e
                    continue
                if not conn.closed:
                    break
            if conn is None or conn.closed:
                raise error
            if self.start_tls and not conn.start_tls():
                raise LdapError(f"StartTLS failed: {conn.result.get('description')}")
            if (sasl or user) and not conn.bind():
                return conn  # the caller reads conn.result (invalid credentials …)
            return conn
        except (LDAPException, OSError) as e:
            raise self.gate.failed(e) from e
        except LdapError as e:
            raise self.gate.failed(e) from e

    def _service_conn(self) -> Any:
        conn = getattr(self.local, "conn", None)
        if conn is None or conn.closed:
            s = self.settings
            conn = self._open(s["dn"] or None, s["dnpass"], sasl=ldapconf.is_yes(s["sasl_bind"]))
            if not conn.bound and (s["dn"] or ldapconf.is_yes(s["sasl_bind"])):
                result = conn.result.get("description", "bind failed")
                conn.unbind()
                raise LdapError(f"binding failed (dn {s['dn'] or '(sasl)'}): {result}")
            self.local.conn = conn
        return conn

    def search(self, base: str, filt: str, attrs: list[str]) -> list[tuple[str, ldapconf.Entry]]:
        for attempt in (1, 2):
            conn = self._service_conn()
            try:
                ok = conn.search(base, filt, search_scope=self.scope,
                                 dereference_aliases=self.deref, attributes=attrs or ["1.1"])
            except (LDAPException, OSError) as e:
                self.local.conn = None
                if attempt == 2:
                    raise LdapError(f"search failed: {e}") from e
                continue
            code = conn.result.get("result", 0)
            if not ok and code not in (0, 32):  # 32: noSuchObject (an empty answer)
                if code in (51, 52, 80, 81) and attempt == 1:  # busy/unavailable/gone
                    self.local.conn = None
                    continue
                raise LdapError(f"ldap_search({filt}) failed: {conn.result.get('description')}")
            entries = []
            for item in conn.response or ():
                if item.get("type") != "searchResEntry":
                    continue
                raw = item.get("raw_attributes", {})
                entries.append((item.get("dn", ""), {
                    k.lower(): [v.decode("utf-8", "surrogateescape") for v in vs]
                    for k, vs in raw.items()}))
            return entries
        raise LdapError("search failed")

    def bind_as(self, dn: str, password: str) -> PassdbResult:
        conn = self._open(dn, password, sasl=False)
        try:
            if conn.bound:
                return PassdbResult.OK
            if conn.result.get("result") == 49:  # invalidCredentials
                return PassdbResult.PASSWORD_MISMATCH
            raise LdapError(f"bind failed: {conn.result.get('description')}")
        finally:
            conn.unbind()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    # -- lookups ---------------------------------------------------------------------------
    async def find(self, request: AuthRequest, which: str, maps: list[ldapconf.AttrMap]
                   ) -> list[tuple[str, ldapconf.Entry]]:
        s = self.settings
        base = request.expand(s["base"]) if "%" in s["base"] else s["base"]
        filt = _expand_filter(s[f"{which}_filter"], request)
        return await self.run(self.search, base, filt, ldapconf.wanted_attrs(maps))

    async def find_one(self, request: AuthRequest, which: str, maps: list[ldapconf.AttrMap]
                       ) -> tuple[str, ldapconf.Entry] | tuple[PassdbResult, str]:
        """The one entry ``{which}_filter`` finds (dn, attributes), or (result, log)."""
        try:
            entries = await self.find(request, which, maps)
        except (LdapError, VariableError) as e:
            return _failure(e)
        if not entries:
            return PassdbResult.USER_UNKNOWN, "unknown user"
        if len(entries) > 1:
            return (PassdbResult.INTERNAL_FAILURE,
                    f"{which}_filter matched multiple objects, aborting")
        return entries[0]

    def row(self, entry: ldapconf.Entry, maps: list[ldapconf.AttrMap], request: AuthRequest
            ) -> list[tuple[str, str | None]]:
        return [(m.field, m.value(entry, request)) for m in maps]


def is_tls_configured(s: dict[str, str]) -> bool:
    return ldapconf.is_yes(s["tls"]) or any(u.startswith("ldaps:") for u in s["uris"].split()) \
        or bool(s["tls_ca_cert_file"] or s["tls_cert_file"])


def _expand_filter(template: str, request: AuthRequest) -> str:
    fields = {"passdb": {k: v or "" for k, v in request.passdb_fields.items()},
              "userdb": {k: v or "" for k, v in request.userdb_fields.items()}}
    return compile_template(template).expand(request.values(), escape=ldapconf.escape_filter,
                                             fields=fields)


_OPEN: dict[str, Directory] = {}


def shared(args: str) -> Directory:
    path = args.strip()
    if not path:
        raise DriverError("ldap: args must name a dovecot-ldap.conf.ext file")
    if path not in _OPEN:
        _OPEN[path] = Directory(path)
    return _OPEN[path]


def _failure(e: Exception) -> tuple[PassdbResult, str]:
    if isinstance(e, VariableError):
        return PassdbResult.INTERNAL_FAILURE, f"Failed to expand: {e}"
    return PassdbResult.INTERNAL_FAILURE, str(e)


def ldap_cache_key(settings: dict[str, str], which: str) -> str | None:
    """Dovecot's cache key for an LDAP passdb/userdb: the request variables of ``base``,
    ``{which}_attrs`` and ``{which}_filter`` (``%{ldap:…}`` are the entry's, not the
    request's: left out)."""
    text = settings["base"] + settings[f"{which}_attrs"] + settings[f"{which}_filter"]
    return cache_key_template(_LDAP_VARS.sub("", text).replace("%$", ""))


_LDAP_VARS = re.compile(r"%\{ldap(?:_multi)?:[^}]*\}")


class LdapPassdb(PlaintextPassdb):
    name = "ldap"

    def __init__(self, args: str) -> None:
        super().__init__(args)
        self.dir = shared(args)
        # Without auth_bind the stored password is checked by the chain, as for SQL.
        self.checks_password = self.dir.auth_bind
        self.cache_key = ldap_cache_key(self.dir.settings, "pass")

    async def _entry(self, request: AuthRequest) -> tuple[str, ldapconf.Entry] | PassdbLookup:
        found = await self.dir.find_one(request, "pass", self.dir.pass_attrs)
        return PassdbLookup(found[0], log=found[1]) if isinstance(found[0], PassdbResult) \
            else found

    def _fields(self, request: AuthRequest, entry: ldapconf.Entry, *, verified: bool
                ) -> PassdbLookup:
        row = self.dir.row(entry, self.dir.pass_attrs, request)
        if verified:  # auth_bind: the password is checked; a stored one does not matter
            row = [(k, v) for k, v in row if k not in ("password", "password_noscheme")]
            found = passdb_row(request, [*row, ("password", "(bound)")],
                               self.dir.default_scheme, has_password=True)
            found.password = None
            return found
        has_password = any(m.field in ("password", "password_noscheme")
                           for m in self.dir.pass_attrs)
        return passdb_row(request, row, self.dir.default_scheme, has_password=has_password)

    async def lookup(self, request: AuthRequest) -> PassdbLookup:
        if self.dir.auth_bind and self.dir.settings["auth_bind_userdn"]:
            return PassdbLookup(PassdbResult.SCHEME_NOT_AVAILABLE,
                                log="passdb lookups not possible with auth_bind_userdn")
        found = await self._entry(request)
        if isinstance(found, PassdbLookup):
            return found
        return self._fields(request, found[1], verified=False)

    async def authenticate(self, request: AuthRequest, password: bytes) -> PassdbLookup:
        if not self.dir.auth_bind:
            found = await self.lookup(request)
            if found.result is not PassdbResult.OK or found.password is None:
                return found
            try:
                ok = await asyncio.get_running_loop().run_in_executor(
                    None, lambda: schemes.verify(found.password or "", password,
                                                 user=request.user,
                                                 default_scheme=found.default_scheme))
            except schemes.SchemeError as e:
                return PassdbLookup(PassdbResult.INTERNAL_FAILURE, log=str(e))
            if not ok:
                return PassdbLookup(PassdbResult.PASSWORD_MISMATCH, log="Password mismatch")
            found.password = None
            return found
        if not password:
            return PassdbLookup(PassdbResult.PASSWORD_MISMATCH, log="Empty password")
        entry: ldapconf.Entry = {}
        userdn = self.dir.settings["auth_bind_userdn"]
        try:
            if userdn:
                dn = _expand_dn(userdn, request)
            else:
                located = await self._entry(request)
                if isinstance(located, PassdbLookup):
                    return located
                dn, entry = located
            result = await self.dir.run(self.dir.bind_as, dn,
                                        password.decode("utf-8", "surrogateescape"))
        except (LdapError, VariableError) as e:
            failure, log = _failure(e)
            return PassdbLookup(failure, log=log)
        if result is not PassdbResult.OK:
            return PassdbLookup(result, log="invalid credentials")
        return self._fields(request, entry, verified=True)


def _expand_dn(template: str, request: AuthRequest) -> str:
    return compile_template(template).expand(request.values(), escape=ldapconf.escape_dn)


class LdapUserdb(UserdbDriver):
    name = "ldap"

    def __init__(self, args: str) -> None:
        super().__init__(args)
        self.dir = shared(args)
        self.cache_key = ldap_cache_key(self.dir.settings, "user")

    async def lookup(self, request: AuthRequest) -> UserdbLookup:
        found = await self.dir.find_one(request, "user", self.dir.user_attrs)
        if isinstance(found[0], PassdbResult):
            return UserdbLookup(found[0], log=str(found[1]))
        entry = found[1]
        assert isinstance(entry, dict)
        return UserdbLookup(PassdbResult.OK, userdb_row(
            request, self.dir.row(entry, self.dir.user_attrs, request)))

    def can_iterate(self) -> bool:
        return True

    async def iterate(self) -> AsyncIterator[str]:
        s = self.dir.settings
        try:
            filt = _expand_filter(s["iterate_filter"], AuthRequest(""))
            entries = await self.dir.run(self.dir.search, s["base"], filt,
                                         ldapconf.wanted_attrs(self.dir.iterate_attrs))
        except (LdapError, VariableError):
            return
        for _dn, entry in entries:
            for m in self.dir.iterate_attrs:
                if m.field == "user" and m.attr:
                    for value in entry.get(m.attr.lower(), []):
                        yield value
