"""The pre-authentication ManageSieve dialogue (RFC 5804) as a sans-IO machine.

Turns parsed command lines into replies and SASL requests for the login server, as the
POP3 dialogue does. Texts, the capability block's order and the bad-command limit are
Pigeonhole 0.5's (Dovecot 2.3.19's managesieve-login), checked by differential tests.
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
from cote.login.pop3_dialogue import Mechanism
from cote.mailproc.managesieve import wire
from cote.mailproc.managesieve.capability import Capabilities
from cote.mailproc.managesieve.wire import Atom, BadLine, Line, String

# The third bad command of a connection gets BYE instead of NO (Pigeonhole's login; good
# commands in between do not reset the count).
MAX_BAD_COMMANDS = 3
COMMAND_ERROR = "Error in MANAGESIEVE command received by server."
# What Pigeonhole's login process takes: a quoted string or atom of more than 1 KiB ends the
# connection ("Input buffer full"); cote also bounds lines and literals at 4 KiB there.
MAX_LOGIN_LINE = 4096
MAX_LOGIN_WORD = 1024
# Where the login process's parser words an error differently from the mail process's.
LOGIN_WORDING = {wire.INVALID_QUOTED: "String contains invalid character."}


@dataclass(frozen=True, slots=True)
class ManageSieveLoginSettings:
    greeting: str  # login_greeting
    capabilities: Capabilities
    mechanisms: tuple[Mechanism, ...]
    secured: bool
    disable_plaintext_auth: bool = True
    tls_available: bool = False  # ssl != no (advertised even on secured connections)
    tls_active: bool = False

    @property
    def plaintext_allowed(self) -> bool:
        return self.secured or not self.disable_plaintext_auth


class State(Enum):
    COMMAND = "command"
    AUTHENTICATING = "authenticating"
    SASL_RESPONSE = "sasl-response"
    DONE = "done"


class ManageSieveLogin:
    def __init__(self, settings: ManageSieveLoginSettings) -> None:
        self.settings = settings
        self.state = State.COMMAND
        self.bad_commands = 0
        self.mechanism: str | None = None
        self.user: str | None = None
        self.responses = 0  # SASL responses in the current exchange

    # -- capability --------------------------------------------------------------------------
    def usable_mechanisms(self) -> list[str]:
        allowed = self.settings.plaintext_allowed
        return [m.name for m in self.settings.mechanisms
                if not m.private and (allowed or not m.plaintext)]

    def capability_block(self) -> bytes:
        s = self.settings
        return b"".join(s.capabilities.lines(self.usable_mechanisms(),
                                             s.tls_available and not s.tls_active))

    def greeting(self) -> bytes:
        return self.capability_block() + wire.ok(self.settings.greeting)

    def tls_started(self) -> list[Action]:
        """RFC 5804 2.2: after TLS the server sends its capabilities again."""
        return [Reply(self.capability_block() + wire.ok("TLS negotiation successful."))]

    # -- client input ------------------------------------------------------------------------
    def handle(self, item: Line | BadLine) -> list[Action]:
        if self.state is State.SASL_RESPONSE:
            return self._sasl_response(item)
        if self.state is not State.COMMAND:
            return []
        if isinstance(item, BadLine):
            if item.too_long:
                self.state = State.DONE
                return [Reply(wire.bye("Input buffer full, aborting")),
                        Disconnect("Input buffer full")]
            # the parser's own words, as Pigeonhole's login words them; a line the parser
            # refuses does not count as a bad command there
            reason = LOGIN_WORDING.get(item.reason, item.reason)
            return [Reply(wire.no(reason))]
        handler = self._handlers.get(item.name)
        if handler is None:
            return self._bad()
        return handler(self, item.args)

    def _bad(self, reply: bytes | None = None) -> list[Action]:
        self.bad_commands += 1
        if self.bad_commands >= MAX_BAD_COMMANDS:
            self.state = State.DONE
            return [Reply(wire.bye("Too many invalid MANAGESIEVE commands.")),
                    Disconnect("Too many invalid commands.")]
        return [Reply(reply or wire.no(COMMAND_ERROR))]

    def _capability(self, args: tuple[wire.Word, ...]) -> list[Action]:
        if args:
            return self._bad()
        return [Reply(self.capability_block() + wire.ok("Capability completed."))]

    def _noop(self, args: tuple[wire.Word, ...]) -> list[Action]:
        if not args:
            return [Reply(wire.ok("NOOP Completed"))]
        if len(args) > 1:
            return self._bad()
        tag = args[0]
        if not isinstance(tag, String):
            return [Reply(wire.no("Invalid echo tag."))]
        return [Reply(b"OK (TAG " + wire.string(tag.value) + b') "Done"\r\n')]

    def _logout(self, args: tuple[wire.Word, ...]) -> list[Action]:
        if args:
            return self._bad()
        self.state = State.DONE
        return [Reply(wire.ok("Logout completed.")), Disconnect("Aborted login by logging out")]

    def _starttls(self, args: tuple[wire.Word, ...]) -> list[Action]:
        if args:
            return self._bad()
        if self.settings.tls_active:
            return [Reply(wire.no("TLS is already active."))]
        if not self.settings.tls_available:
            return [Reply(wire.no("TLS support isn't enabled."))]
        return [Reply(wire.ok("Begin TLS negotiation now.")), StartTls()]

    def _authenticate(self, args: tuple[wire.Word, ...]) -> list[Action]:
        if not args or len(args) > 2 or not all(isinstance(a, String) for a in args):
            return self._bad()
        name = args[0].value.decode("ascii", "replace").upper() \
            if isinstance(args[0], String) else ""
        mech = next((m for m in self.settings.mechanisms
                     if m.name == name and not m.private), None)
        self.mechanism = name
        if mech is None:
            return [Reply(wire.no("Unsupported authentication mechanism."))]
        if mech.plaintext and not self.settings.plaintext_allowed:
            return [Reply(wire.no("Plaintext authentication disabled."))]
        initial: bytes | None = None
        if len(args) == 2:
            raw = args[1].value if isinstance(args[1], String) else b""
            initial = _decode_b64(raw)
            if initial is None:
                return [Reply(wire.no("Invalid base64 data in initial response"))]
        self.state = State.AUTHENTICATING
        self.responses = 0
        self._note_user(initial)
        return [Authenticate(mech.name, initial)]

    def _note_user(self, response: bytes | None) -> None:
        """The user name for log lines, as Dovecot logs it even when auth fails: PLAIN's
        authentication identity, LOGIN's first answer."""
        if response is None:
            return
        self.responses += 1
        name: bytes | None = None
        if self.mechanism == "PLAIN":
            parts = response.split(b"\0")
            name = parts[1] if len(parts) == 3 else None
        elif self.mechanism == "LOGIN" and self.responses == 1:
            name = response
        if name:
            self.user = name.decode("utf-8", "replace")

    _handlers: ClassVar[dict[str, Callable[[ManageSieveLogin, tuple[wire.Word, ...]],
                                           list[Action]]]] = {
        "CAPABILITY": _capability, "NOOP": _noop, "LOGOUT": _logout, "STARTTLS": _starttls,
        "AUTHENTICATE": _authenticate,
    }

    def _sasl_response(self, item: Line | BadLine) -> list[Action]:
        words = item.words if isinstance(item, Line) else ()
        if len(words) != 1 or not isinstance(words[0], String):
            self.state = State.COMMAND
            if words == (Atom("*"),) or (len(words) == 1 and isinstance(words[0], Atom)):
                return [AuthCancel(), Reply(wire.no("Invalid AUTHENTICATE client response."))]
            return [AuthCancel(), *self._bad(wire.no("Invalid AUTHENTICATE client response."))]
        value = words[0].value
        if value == b"*" and not words[0].literal:
            self.state = State.COMMAND
            return [AuthCancel(), Reply(wire.no("Authentication aborted by client."))]
        decoded = _decode_b64(value)
        if decoded is None:
            self.state = State.COMMAND
            return [AuthCancel(), Reply(wire.no("Invalid base64 in response"))]
        self.state = State.AUTHENTICATING
        self._note_user(decoded)
        return [AuthContinue(decoded)]

    # -- auth daemon answers -----------------------------------------------------------------
    def challenge(self, data: bytes) -> list[Action]:
        self.state = State.SASL_RESPONSE
        return [Reply(wire.string(b64encode(data)) + b"\r\n")]

    def failed(self, reason: str | None = None, *, temporary: bool = False) -> list[Action]:
        self.state = State.COMMAND
        if temporary:
            return [Reply(wire.no(reason or "Temporary authentication failure.", "TRYLATER"))]
        return [Reply(wire.no(reason or "Authentication failed."))]

    def succeeded(self) -> None:
        """Auth OK: the managesieve mail process answers ``OK "Logged in."``."""
        self.state = State.DONE


def _decode_b64(data: bytes) -> bytes | None:
    if data in (b"", b"="):
        return b""
    try:
        return b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
