"""The imap-login service: the IMAP pre-auth dialogue on the shared login server.

``run(ctx)`` is the master's entry point. Parsing (literals, the login dialect's BAD texts and
bad-command limit) is the shared sans-IO :class:`cote.mailproc.imap.Connection` with
``pre_login=True``; this module decides the answers — Dovecot 2.3's, byte for byte — and turns
LOGIN and AUTHENTICATE into SASL requests for the login server. The tagged ``OK … Logged in``
is written by the IMAP mail process (it knows the post-login capabilities), so the hand-off
carries the tag and whether the client already asked for CAPABILITY.
"""

from __future__ import annotations

import binascii
import dataclasses
from base64 import b64decode, b64encode
from urllib.parse import quote

from cote.auth.protocol.auth_client import MechanismInfo, MechFlag
from cote.config import Config
from cote.ipc import ServiceContext
from cote.login.actions import (
    Action,
    AuthCancel,
    AuthContinue,
    Authenticate,
    Disconnect,
    Reply,
    StartTls,
)
from cote.login.forward import Forwarded, from_imap_id
from cote.login.server import ConnectionFacts, FrontendFactory
from cote.login.service import prepare_login, run_login
from cote.mailproc.imap import (
    CLOSED,
    LOGIN_COMMANDS,
    NEED_DATA,
    AuthResponse,
    Bad,
    Bye,
    Command,
    Connection,
    response,
)
from cote.mailproc.imap.commands import Authenticate as AuthenticateArgs
from cote.mailproc.imap.commands import Id as IdArgs
from cote.mailproc.imap.commands import Login

BANNER_CAPABILITIES = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+"
EXPOSED_ALERT = ("Plaintext authentication not allowed without SSL/TLS, but your client did it "
                 "anyway. If anyone was listening, the password was exposed.")
STOPPING = (Authenticate, StartTls, Disconnect)


@dataclasses.dataclass(frozen=True, slots=True)
class ImapLoginSettings:
    greeting: str
    mechanisms: tuple[MechanismInfo, ...]
    secured: bool
    disable_plaintext_auth: bool
    tls_available: bool
    capability: str = ""  # imap_capability: replaces the banner list (or "+…" adds to it)
    trusted: bool = False  # login_trusted_networks: ID's x-* fields name the real client

    @property
    def plaintext_allowed(self) -> bool:
        return self.secured or not self.disable_plaintext_auth


class ImapFrontend:
    def __init__(self, settings: ImapLoginSettings) -> None:
        self.settings = settings
        self.conn = Connection(pre_login=True, commands=LOGIN_COMMANDS)
        self.user: str | None = None
        self.mechanism: str | None = None
        self.tag = ""  # of the LOGIN/AUTHENTICATE in progress
        self.capability_sent = False
        self.cancelled = False
        self.forwarded: Forwarded | None = None

    # -- what the client sees -----------------------------------------------------------
    def capabilities(self) -> str:
        s = self.settings
        caps = s.capability or BANNER_CAPABILITIES
        if caps.startswith("+"):
            caps = f"{BANNER_CAPABILITIES} {caps[1:].strip()}"
        words = [caps]
        if s.tls_available:
            words.append("STARTTLS")
        if not s.plaintext_allowed:
            words.append("LOGINDISABLED")
        words += [f"AUTH={m.name}" for m in self._usable()]
        return " ".join(words)

    def _usable(self) -> list[MechanismInfo]:
        allowed = self.settings.plaintext_allowed
        return [m for m in self.settings.mechanisms if not m.flags & MechFlag.PRIVATE
                and (allowed or not m.flags & MechFlag.PLAINTEXT)]

    def greeting(self) -> bytes:
        return response.untagged("OK", self.settings.greeting, f"CAPABILITY {self.capabilities()}")

    # -- input -------------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[Action]:
        if data:
            self.conn.receive_data(data)
        actions: list[Action] = []
        while True:
            event = self.conn.next_event()
            if event is NEED_DATA or event is CLOSED:
                return actions
            step = self._event(event)
            actions += step
            if any(isinstance(a, STOPPING) for a in step):
                return actions  # the rest waits in the parser's buffer

    def resume(self) -> list[Action]:
        return self.feed(b"")

    def _event(self, event: object) -> list[Action]:
        if isinstance(event, Bad):
            return [Reply(response.tagged(event.tag, "BAD", event.text))]
        if isinstance(event, Bye):
            reason = "Too many invalid commands" if "Too many" in event.text else \
                event.text.rstrip(".")
            return [Reply(response.untagged("BYE", event.text)), Disconnect(reason)]
        if isinstance(event, AuthResponse):
            return self._sasl_response(event)
        assert isinstance(event, Command)
        handler = getattr(self, f"_cmd_{event.name.lower()}", None)
        if handler is None:  # the parser only yields LOGIN_COMMANDS
            return [Reply(response.tagged(event.tag, "BAD", "Unknown command."))]
        actions: list[Action] = handler(event)
        return actions

    def _cmd_capability(self, cmd: Command) -> list[Action]:
        self.capability_sent = True
        return [Reply(b"* CAPABILITY " + self.capabilities().encode() + b"\r\n" +
                      response.tagged(cmd.tag, "OK", "Pre-login capabilities listed, "
                                                     "post-login capabilities have more."))]

    def _cmd_noop(self, cmd: Command) -> list[Action]:
        return [Reply(response.tagged(cmd.tag, "OK", "NOOP completed."))]

    def _cmd_logout(self, cmd: Command) -> list[Action]:
        return [Reply(response.untagged("BYE", "Logging out") +
                      response.tagged(cmd.tag, "OK", "Logout completed.")),
                Disconnect("Aborted login by logging out")]

    def _cmd_id(self, cmd: Command) -> list[Action]:
        if self.settings.trusted and isinstance(cmd.args, IdArgs):
            found = from_imap_id(cmd.args.params)
            self.forwarded = found if self.forwarded is None else self.forwarded.merged(found)
        return [Reply(b'* ID ("name" "Dovecot")\r\n' +
                      response.tagged(cmd.tag, "OK", "ID completed."))]

    def _cmd_enable(self, cmd: Command) -> list[Action]:
        return [Reply(b"* ENABLED\r\n" + response.tagged(
            cmd.tag, "OK", "ENABLE ignored in non-authenticated state."))]

    def _cmd_starttls(self, cmd: Command) -> list[Action]:
        if not self.settings.tls_available:
            return [Reply(response.tagged(cmd.tag, "BAD", "TLS support isn't enabled."))]
        return [Reply(response.tagged(cmd.tag, "OK", "Begin TLS negotiation now.")), StartTls()]

    def _cmd_login(self, cmd: Command) -> list[Action]:
        assert isinstance(cmd.args, Login)
        if not self.settings.plaintext_allowed:
            return [Reply(response.untagged("BAD", EXPOSED_ALERT, "ALERT") + response.tagged(
                cmd.tag, "NO", "Plaintext authentication disallowed on non-secure (SSL/TLS) "
                               "connections.", "PRIVACYREQUIRED"))]
        self.user = cmd.args.username.decode("utf-8", "surrogateescape")
        return self._start(cmd.tag, "PLAIN", b"\0" + cmd.args.username + b"\0" +
                           cmd.args.password)

    def _cmd_authenticate(self, cmd: Command) -> list[Action]:
        assert isinstance(cmd.args, AuthenticateArgs)
        mech = next((m for m in self.settings.mechanisms if m.name == cmd.args.mechanism
                     and not m.flags & MechFlag.PRIVATE), None)
        if mech is None:
            return [Reply(response.tagged(cmd.tag, "NO", "Unsupported authentication mechanism.",
                                          "ALERT"))]
        if mech.flags & MechFlag.PLAINTEXT and not self.settings.plaintext_allowed:
            return [Reply(response.tagged(cmd.tag, "NO", "Plaintext authentication disabled.",
                                          "PRIVACYREQUIRED"))]
        initial: bytes | None = None
        if cmd.args.initial_response is not None:
            initial = _decode_b64(cmd.args.initial_response)
            if initial is None:
                return [Reply(response.tagged(cmd.tag, "NO", "Invalid base64 in response",
                                              "ALERT"))]
        return self._start(cmd.tag, mech.name, initial)

    def _start(self, tag: str, mechanism: str, initial: bytes | None) -> list[Action]:
        self.tag = tag
        self.mechanism = mechanism
        return [Authenticate(mechanism, initial)]

    def _sasl_response(self, event: AuthResponse) -> list[Action]:
        self.conn.end_authenticate()
        if event.cancelled:
            return [AuthCancel(), Reply(response.tagged(self.tag, "BAD",
                                                        "Authentication aborted by client."))]
        data = _decode_b64(event.line)
        if data is None:
            return [AuthCancel(), Reply(response.tagged(self.tag, "NO",
                                                        "Invalid base64 in response", "ALERT"))]
        return [AuthContinue(data)]

    # -- auth daemon answers ----------------------------------------------------------------------
    def challenge(self, data: bytes) -> list[Action]:
        self.conn.authenticate(self.tag)
        return [Reply(response.continuation(b64encode(data)))]

    def failed(self, reason: str | None, *, temporary: bool) -> list[Action]:
        if temporary:
            text = reason or "Temporary authentication failure."
            return [Reply(response.tagged(self.tag, "NO", text, "UNAVAILABLE"))]
        if reason:  # the passdb's reason (Dovecot: an ALERT unless it has its own code)
            if reason.startswith("["):
                return [Reply(f"{self.tag} NO {reason}\r\n".encode())]
            return [Reply(response.tagged(self.tag, "NO", reason, "ALERT"))]
        return [Reply(response.tagged(self.tag, "NO", "Authentication failed.",
                                      "AUTHENTICATIONFAILED"))]

    def succeeded(self) -> None:
        """The mail process answers ``<tag> OK … Logged in`` (see handoff_extra)."""

    def refused(self, reason: str) -> list[Action]:
        return [Reply(response.tagged(self.tag, "NO", reason, "CONTACTADMIN"))]

    def referral(self, user: str, host: str, port: int | None, reason: str | None
                 ) -> list[Action]:
        where = host if port is None or port == 143 else f"{host}:{port}"
        url = f"imap://{quote(user, safe='')};AUTH={self.mechanism or 'PLAIN'}@{where}/"
        return [Reply(response.tagged(self.tag, "NO", reason or "Try this server instead.",
                                      f"REFERRAL {url}"))]

    def proxy_failed(self, reply: bytes) -> list[Action]:
        return [Reply(reply)]

    def refusal(self, text: str) -> bytes:
        return response.tagged(self.tag, "NO", text, "LIMIT")

    def goodbye(self, text: str) -> bytes:
        return response.untagged("BYE", text)

    def take_forwarded(self) -> Forwarded | None:
        forwarded, self.forwarded = self.forwarded, None
        return forwarded

    def handoff_extra(self) -> dict[str, str]:
        return {"imap_tag": self.tag, "imap_capability_sent": "1" if self.capability_sent
                else ""}

    def take_buffered(self) -> bytes:
        return self.conn.start_tls()  # returns (and drops) what the client pipelined

    def discard_buffered(self) -> None:
        self.conn.start_tls()

    def tls_started(self) -> None:
        self.settings = dataclasses.replace(self.settings, secured=True, tls_available=False)


def _decode_b64(data: bytes) -> bytes | None:
    if data == b"=":
        return b""
    try:
        return b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def frontend_factory(cfg: Config, tls_possible: bool) -> FrontendFactory:
    # Read the config once (before fork, see login/service.py), not once per client.
    greeting, capability = str(cfg.get("login_greeting")), str(cfg.get("imap_capability"))
    disable_plaintext_auth = bool(cfg.get("disable_plaintext_auth"))

    def make(facts: ConnectionFacts, mechanisms: tuple[MechanismInfo, ...]) -> ImapFrontend:
        return ImapFrontend(ImapLoginSettings(
            greeting=greeting, mechanisms=mechanisms, secured=facts.secured,
            disable_plaintext_auth=disable_plaintext_auth,
            tls_available=tls_possible and not facts.tls, capability=capability,
            trusted=facts.trusted))
    return make


def prepare(config: Config) -> dict[str, object]:
    return prepare_login(config, "imap", frontend_factory)


def run(ctx: ServiceContext) -> int:
    run_login(ctx, "imap", frontend_factory)
    return 0
