"""passdb oauth2: the OAUTHBEARER/XOAUTH2 token (or any password) checked by the identity
provider's token introspection, as Dovecot's ``dovecot-oauth2.conf.ext`` configures it.

``introspection_mode`` says how the token is sent to ``introspection_url``: ``auth`` (GET
with ``Authorization: Bearer <token>``), ``get`` (GET ``<url><token>&client_id=…&client_secret=…``),
``post`` (form POST ``token=…&client_id=…&client_secret=…``); ``tokeninfo_url`` (GET
``<url><token>``) is asked first when set, introspection then only when it names no user or
``force_introspection = yes``. The JSON answer must name the user (``username_attribute``,
compared with the login name after ``username_format``), be active (``active_attribute`` =
``active_value``) and grant every ``scope``. ``introspection_mode = local`` (JWT validation
against local keys) is not implemented (docs/differences.md).

HTTP goes through urllib in a thread of the auth process's executor: the event loop never
waits on the identity provider.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from cote.auth.drivers import extconf
from cote.auth.drivers.base import DriverError, PassdbLookup
from cote.auth.drivers.plaintext import PlaintextPassdb
from cote.auth.mechanisms import PassdbResult
from cote.auth.request import AuthRequest
from cote.variables import VariableError, compile_template

KNOWN = ("tokeninfo_url", "introspection_url", "introspection_mode", "username_attribute",
         "active_attribute", "active_value", "scope", "force_introspection", "client_id",
         "client_secret", "username_format", "timeout_msecs", "pass_attrs", "issuers",
         "max_idle_time_msecs", "max_parallel_connections", "max_pipelined_requests",
         "send_auth_headers", "use_grant_password", "debug", "rawlog_dir", "tls_ca_cert_file",
         "tls_ca_cert_dir", "tls_cert_file", "tls_key_file", "tls_cipher_suite",
         "tls_allow_invalid_cert", "blocking", "local_validation_key_dict",
         "openid_configuration_url")
DEFAULT_TIMEOUT = 20.0


class Rejected(Exception):
    """The token is not good for this login: (result, Dovecot's reason)."""

    def __init__(self, result: PassdbResult, reason: str) -> None:
        super().__init__(reason)
        self.result = result


@dataclass(frozen=True)
class Settings:
    tokeninfo_url: str
    introspection_url: str
    mode: str
    username_attribute: str
    active_attribute: str
    active_value: str
    scopes: tuple[str, ...]
    force_introspection: bool
    client_id: str
    client_secret: str
    username_format: str
    timeout: float


def settings(path: str) -> Settings:
    raw = extconf.read(path, KNOWN, kind="oauth2")
    mode = raw.get("introspection_mode", "")
    if mode not in ("", "auth", "get", "post", "local"):
        raise DriverError(f"oauth2: Invalid introspection_mode {mode!r}")
    if not raw.get("tokeninfo_url") and not raw.get("introspection_url") and mode != "local":
        raise DriverError("oauth2: tokeninfo_url or introspection_url is required")
    for key in ("tokeninfo_url", "introspection_url"):
        if raw.get(key) and urllib.parse.urlsplit(raw[key]).scheme not in ("http", "https"):
            raise DriverError(f"oauth2: {key} must be an http or https URL")
    msecs = raw.get("timeout_msecs", "0")
    return Settings(
        raw.get("tokeninfo_url", ""), raw.get("introspection_url", ""), mode or "auth",
        raw.get("username_attribute", "email"), raw.get("active_attribute", ""),
        raw.get("active_value", ""), tuple(raw.get("scope", "").split()),
        raw.get("force_introspection", "no") == "yes", raw.get("client_id", ""),
        raw.get("client_secret", ""), raw.get("username_format", "%Lu"),
        int(msecs) / 1000 if msecs.isdigit() and int(msecs) > 0 else DEFAULT_TIMEOUT)


def _http(url: str, data: bytes | None = None,
          headers: dict[str, str] | None = None) -> urllib.request.Request:
    """A request to an http(s) URL only (the settings' URLs are checked at start-up)."""
    return urllib.request.Request(url, data=data, headers=headers or {})  # noqa: S310


def _text(value: object) -> str:
    """A JSON value as Dovecot compares it (true → "true")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def fetch(request: urllib.request.Request, timeout: float) -> dict[str, object]:
    """One HTTP exchange (blocking: run in a thread); the JSON object answered."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read()
    except urllib.error.HTTPError as e:
        if e.code != 401:  # 401 still carries the provider's JSON (e.g. active=false)
            raise OSError(f"{e.code} {e.reason}") from e
        body = e.read()
    except (urllib.error.URLError, TimeoutError) as e:
        raise OSError(str(getattr(e, "reason", e))) from e
    try:
        data = json.loads(body)
    except ValueError as e:
        raise OSError(f"Invalid JSON: {e}") from e
    if not isinstance(data, dict):
        raise OSError("Invalid JSON: not an object")
    return data


class OAuth2Passdb(PlaintextPassdb):
    name = "oauth2"

    def __init__(self, args: str) -> None:
        super().__init__(args)
        self.settings = settings(args.strip())
        self.username_format = compile_template(self.settings.username_format)

    def _requests(self, token: str) -> list[tuple[str, urllib.request.Request]]:
        """What to ask, in order: ("tokeninfo" | "introspection", request)."""
        s = self.settings
        quoted = urllib.parse.quote(token, safe="")
        asks: list[tuple[str, urllib.request.Request]] = []
        if s.tokeninfo_url:
            asks.append(("tokeninfo", _http(s.tokeninfo_url + quoted)))
        if s.introspection_url:
            creds = (f"&client_id={urllib.parse.quote(s.client_id, safe='')}"
                     f"&client_secret={urllib.parse.quote(s.client_secret, safe='')}")
            if s.mode == "get":
                ask = _http(s.introspection_url + quoted + creds)
            elif s.mode == "post":
                ask = _http(s.introspection_url, data=f"token={quoted}{creds}".encode(),
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
            else:
                ask = _http(s.introspection_url, headers={"Authorization": f"Bearer {token}"})
            asks.append(("introspection", ask))
        return asks

    async def _claims(self, token: str) -> dict[str, object]:
        loop = asyncio.get_running_loop()
        claims: dict[str, object] = {}
        for kind, ask in self._requests(token):
            if kind == "introspection" and claims and \
                    self.settings.username_attribute in claims and \
                    not self.settings.force_introspection:
                break
            try:
                claims = await loop.run_in_executor(None, fetch, ask, self.settings.timeout)
            except OSError as e:
                raise OSError(f"{kind.capitalize()} failed: {e}") from e
        return claims

    def validate(self, request: AuthRequest, claims: dict[str, object]) -> None:
        """Raises Rejected (or OSError: the provider's answer cannot be used)."""
        s = self.settings
        if s.username_attribute not in claims:
            raise OSError("Introspection failed: No username returned")
        if s.active_attribute and _text(claims.get(s.active_attribute)) != s.active_value:
            raise Rejected(PassdbResult.PASSWORD_MISMATCH,
                           "Introspection failed: Provided token is not valid")
        found = _text(claims[s.username_attribute])
        try:
            wanted = self.username_format.expand(request.values())
        except VariableError as e:
            raise OSError(str(e)) from e
        if found != wanted:
            raise Rejected(PassdbResult.PASSWORD_MISMATCH,
                           f"Introspection failed: Username '{wanted}' did not match '{found}'")
        granted = _text(claims.get("scope", "")).replace(",", " ").split()
        for scope in s.scopes:
            if scope not in granted:
                raise Rejected(PassdbResult.USER_DISABLED,
                               f"Introspection failed: Token is not valid for scope '{scope}'")

    async def authenticate(self, request: AuthRequest, password: bytes) -> PassdbLookup:
        if self.settings.mode == "local" and not self.settings.introspection_url:
            return PassdbLookup(PassdbResult.INTERNAL_FAILURE,
                                log="oauth2 failed: introspection_mode = local is not "
                                    "supported by cote")
        token = password.decode("utf-8", "surrogateescape")
        try:
            self.validate(request, await self._claims(token))
        except Rejected as e:
            return PassdbLookup(e.result, log=f"oauth2 failed: {e}")
        except OSError as e:
            return PassdbLookup(PassdbResult.INTERNAL_FAILURE, log=f"oauth2 failed: {e}")
        return PassdbLookup(PassdbResult.OK, None, {"token": token})

    async def lookup(self, request: AuthRequest) -> PassdbLookup:
        """Without a token there is nothing to ask the provider (Dovecot: no credentials)."""
        return PassdbLookup(PassdbResult.SCHEME_NOT_AVAILABLE,
                            log="oauth2 passdb cannot look up credentials")
