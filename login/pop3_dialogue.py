"""The pre-authentication POP3 dialogue (RFC 1939, 2449, 2595, 5034) as a sans-IO machine.

It turns client lines into replies and into requests for the auth daemon (``Authenticate``,
``AuthContinue``, ``AuthCancel``); the login process's I/O layer carries those over the
auth-client socket and feeds the daemon's answers back (``challenge``, ``failed``). USER/PASS
and APOP become SASL requests too, so every password check goes through one path. Texts are
Dovecot 2.3's, byte for byte.
"""

from __future__ import annotations

import binascii
from base64 import b64decode, b64encode
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from cote.login.actions import (
    Action,
    AuthCancel,
    AuthContinue,
    Authenticate,
    Disconnect,
    Reply,
    StartTls,
)
from cote.mailproc.pop3 import wire

# Dovecot's login processes drop a client after this many unknown commands.
MAX_BAD_COMMANDS = 3
# A command line may be 1 KiB; SASL lines (AUTH with an initial response, continuations)
# may be longer, up to the reader's limit (wire.MAX_LINE), for large tokens.
MAX_COMMAND_LINE = 1024
BASE_CAPABILITIES = ("CAPA", "TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE")
PLAINTEXT_DISALLOWED = "Plaintext authentication disallowed on non-secure (SSL/TLS) connections."


@dataclass(frozen=True, slots=True)
class Mechanism:
    """A SASL mechanism as the auth daemon announced it (MECH line)."""

    name: str
    plaintext: bool = False  # refused on insecure connections unless plaintext auth is allowed
    private: bool = False  # never advertised (e.g. APOP is its own command)


@dataclass(frozen=True, slots=True)
class Pop3LoginSettings:
    greeting: str  # login_greeting
    mechanisms: tuple[Mechanism, ...]
    secured: bool  # TLS, a trusted network, or local IP == remote IP
    disable_plaintext_auth: bool = True
    tls_available: bool = False  # ssl != no and the connection is not TLS yet
    apop_timestamp: str | None = None  # "<...@host>" when the APOP mechanism is enabled

    @property
    def plaintext_allowed(self) -> bool:
        return self.secured or not self.disable_plaintext_auth




class State(Enum):
    COMMAND = "command"
    AUTHENTICATING = "authenticating"  # waiting for the auth daemon
    SASL_RESPONSE = "sasl-response"  # waiting for the client's continuation line
    DONE = "done"


class Pop3Login:
    def __init__(self, settings: Pop3LoginSettings) -> None:
        self.settings = settings
        self.state = State.COMMAND
        self.user: str | None = None
        self.bad_commands = 0
        self.auth_attempts = 0
        self.mechanism: str | None = None

    def greeting(self) -> bytes:
        text = self.settings.greeting
        if self.settings.apop_timestamp:
            text = f"{text} {self.settings.apop_timestamp}"
        return wire.ok(text)

    def capabilities(self) -> list[str]:
        caps = list(BASE_CAPABILITIES)
        if self.settings.tls_available:
            caps.append("STLS")
        if self.settings.plaintext_allowed:
            caps.append("USER")
        mechs = self._usable_mechanisms()
        if mechs:
            caps.append("SASL " + " ".join(m.name for m in mechs))
        return caps

    def _usable_mechanisms(self) -> list[Mechanism]:
        allowed = self.settings.plaintext_allowed
        return [m for m in self.settings.mechanisms
                if not m.private and (allowed or not m.plaintext)]

    # -- client input ------------------------------------------------------------------
    def handle_line(self, line: bytes) -> list[Action]:
        """One line without its LF. The reader bounds it at wire.MAX_LINE."""
        if self.state is State.SASL_RESPONSE:
            return self._sasl_response(line.rstrip(b"\r"))
        if self.state is not State.COMMAND:
            # Pipelined input while the auth daemon works: Dovecot reads no further.
            return []
        if len(line) > MAX_COMMAND_LINE and line[:5].upper() != b"AUTH ":
            return self.line_too_long()
        cmd = wire.parse_command(line)
        handler = self._handlers.get(cmd.verb)
        if handler is None:
            self.bad_commands += 1
            if self.bad_commands > MAX_BAD_COMMANDS:
                self.state = State.DONE
                return [Reply(wire.err("Too many invalid bad commands.")),
                        Disconnect("Too many invalid commands")]
            return [Reply(wire.err("Unknown command."))]
        return handler(self, cmd.args)

    def line_too_long(self) -> list[Action]:
        self.state = State.DONE
        return [Reply(wire.err("Input buffer full, aborting")), Disconnect("Input buffer full")]

    def _capa(self, args: str) -> list[Action]:
        return [Reply(wire.multiline(wire.ok(), self.capabilities()))]

    def _user(self, args: str) -> list[Action]:
        if not self.settings.plaintext_allowed:
            return [Reply(wire.err(PLAINTEXT_DISALLOWED, "AUTH"))]
        self.user = args
        return [Reply(wire.ok())]

    def _pass(self, args: str) -> list[Action]:
        if not self.settings.plaintext_allowed:
            return [Reply(wire.err(PLAINTEXT_DISALLOWED, "AUTH"))]
        if self.user is None:
            return [Reply(wire.err("No username given."))]
        response = b"\0" + self.user.encode("utf-8", "surrogateescape") + b"\0" + \
            args.encode("utf-8", "surrogateescape")
        return self._start("PLAIN", response)

    def _apop(self, args: str) -> list[Action]:
        user, _, digest = args.partition(" ")
        if not self.settings.apop_timestamp:
            return [Reply(wire.err("Unknown command."))]
        if not user or len(digest) != 32:
            return [Reply(wire.err("Invalid parameters."))]
        # The APOP mechanism's response: the challenge, the user and the digest, NUL-separated.
        response = b"\0".join((self.settings.apop_timestamp.encode(),
                               user.encode("utf-8", "surrogateescape"), digest.encode()))
        return self._start("APOP", response)

    def _auth(self, args: str) -> list[Action]:
        if not args:
            names = [m.name for m in self._usable_mechanisms()]
            return [Reply(wire.multiline(wire.ok(), names))]
        name, _, initial = args.partition(" ")
        mech = next((m for m in self.settings.mechanisms
                     if m.name == name.upper() and not m.private), None)
        if mech is None:
            return [Reply(wire.err("Unsupported authentication mechanism.", "AUTH"))]
        if mech.plaintext and not self.settings.plaintext_allowed:
            return [Reply(wire.err("Plaintext authentication disabled.", "AUTH"))]
        response: bytes | None = None
        if initial:
            decoded = _decode_b64(initial.encode())
            if decoded is None:
                return [Reply(wire.err("Invalid base64 in response", "AUTH"))]
            response = decoded
        return self._start(mech.name, response)

    def _stls(self, args: str) -> list[Action]:
        if not self.settings.tls_available:
            return [Reply(wire.err("TLS support isn't enabled."))]
        return [Reply(wire.ok("Begin TLS negotiation now.")), StartTls()]

    def _quit(self, args: str) -> list[Action]:
        self.state = State.DONE
        return [Reply(wire.ok("Logging out")), Disconnect("Aborted login by logging out")]

    _handlers: ClassVar[dict[str, Callable[[Pop3Login, str], list[Action]]]] = {
        "CAPA": _capa, "USER": _user, "PASS": _pass, "APOP": _apop, "AUTH": _auth,
        "STLS": _stls, "QUIT": _quit,
    }

    def _start(self, mechanism: str, response: bytes | None) -> list[Action]:
        self.state = State.AUTHENTICATING
        self.mechanism = mechanism
        self.auth_attempts += 1
        return [Authenticate(mechanism, response)]

    def _sasl_response(self, line: bytes) -> list[Action]:
        if line == b"*":
            self.state = State.COMMAND
            return [AuthCancel(), Reply(wire.err("Authentication aborted by client."))]
        decoded = _decode_b64(line)
        if decoded is None:
            self.state = State.COMMAND
            return [AuthCancel(), Reply(wire.err("Invalid base64 in response", "AUTH"))]
        self.state = State.AUTHENTICATING
        return [AuthContinue(decoded)]

    # -- auth daemon answers -------------------------------------------------------------
    def challenge(self, data: bytes) -> list[Action]:
        self.state = State.SASL_RESPONSE
        return [Reply(b"+ " + b64encode(data) + b"\r\n")]

    def failed(self, reason: str | None = None, *, temporary: bool = False) -> list[Action]:
        """Auth FAIL (after the failure delay). ``reason`` is shown when the daemon gave one."""
        self.state = State.COMMAND
        if temporary:
            return [Reply(wire.err(reason or "Temporary authentication failure.", "SYS/TEMP"))]
        return [Reply(wire.err(reason or "Authentication failed.", "AUTH"))]

    def succeeded(self) -> None:
        """Auth OK: the connection goes to a pop3 mail process, which says ``+OK Logged in.``"""
        self.state = State.DONE




def _decode_b64(data: bytes) -> bytes | None:
    if data == b"=":
        return b""
    try:
        return b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
