"""The pop3-login service: the POP3 pre-auth dialogue on the shared login server.

``run(ctx)`` is the entry point the master calls in a forked pop3-login process (see
docs/process-contract.md). The dialogue itself is the sans-IO :mod:`cote.login.pop3_dialogue`;
:class:`Pop3Frontend` feeds it lines and stops at the actions the server must carry out.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import secrets
import socket
import time

from cote.auth.protocol.auth_client import MechanismInfo
from cote.config import Config
from cote.ipc import ServiceContext
from cote.login.actions import Action, Authenticate, Disconnect, Reply, StartTls
from cote.login.dialogue_frontend import DialogueFrontend, login_mechanisms
from cote.login.forward import Forwarded, from_xclient
from cote.login.pop3_dialogue import Pop3Login, Pop3LoginSettings, State
from cote.login.server import ConnectionFacts, FrontendFactory
from cote.login.service import prepare_login, run_login
from cote.mailproc.pop3 import wire

_apop_counter = itertools.count(1)
STOPPING = (Authenticate, StartTls, Disconnect)


def apop_timestamp() -> str:
    """A unique RFC 1939 timestamp ``<pid.counter.time.random@host>`` for the greeting."""
    return (f"<{os.getpid():x}.{next(_apop_counter):x}.{int(time.time()):x}."
            f"{secrets.token_urlsafe(16)}@{socket.gethostname()}>")


class Pop3Frontend(DialogueFrontend[Pop3Login]):
    def __init__(self, facts: ConnectionFacts, mechanisms: tuple[MechanismInfo, ...],
                 cfg: Config, tls_possible: bool) -> None:
        mechs = login_mechanisms(mechanisms)
        apop = apop_timestamp() if any(m.name == "APOP" for m in mechs) else None
        self.dialogue = Pop3Login(Pop3LoginSettings(
            greeting=str(cfg.get("login_greeting")), mechanisms=mechs, secured=facts.secured,
            disable_plaintext_auth=bool(cfg.get("disable_plaintext_auth")),
            tls_available=tls_possible and not facts.tls, apop_timestamp=apop))
        self.lines = wire.LineReader()
        self.trusted = facts.trusted
        self.forwarded: Forwarded | None = None

    def greeting(self) -> bytes:
        greeting = self.dialogue.greeting()
        if self.trusted:  # a trusted proxy may tell who the client is (XCLIENT)
            greeting = b"+OK [XCLIENT] " + greeting.removeprefix(b"+OK ")
        return greeting

    def refusal(self, text: str) -> bytes:
        return wire.err(text, "IN-USE")

    def goodbye(self, text: str) -> bytes:
        return wire.err(text)

    def take_forwarded(self) -> Forwarded | None:
        forwarded, self.forwarded = self.forwarded, None
        return forwarded

    def _xclient(self, args: str) -> list[Action]:
        if not self.trusted:
            return [Reply(wire.ok("You are not from trusted IP - ignoring"))]
        found, valid = from_xclient(args)
        self.forwarded = found if self.forwarded is None else self.forwarded.merged(found)
        return [Reply(wire.ok("Updated") if valid else wire.err("Invalid parameters"))]

    def feed(self, data: bytes) -> list[Action]:
        actions: list[Action] = []
        for line in self.lines.lines(data):
            if isinstance(line, wire.LineTooLong):
                return actions + self.dialogue.line_too_long()
            if line[:8].upper() in (b"XCLIENT", b"XCLIENT ", b"XCLIENT\r") \
                    and self.dialogue.state is State.COMMAND:
                actions += self._xclient(line[8:].decode("utf-8", "replace").strip())
                continue
            step = self.dialogue.handle_line(line)
            actions += step
            if any(isinstance(a, STOPPING) for a in step):
                break  # the rest stays buffered until resume() or the hand-off
        return actions

    def take_buffered(self) -> bytes:
        return self.lines.take_buffered()

    def discard_buffered(self) -> None:
        self.lines.take_buffered()

    def referral(self, user: str, host: str, port: int | None, reason: str | None
                 ) -> list[Action]:
        """POP3 has no referrals: the client only sees the reason."""
        return self.proxy_failed(wire.err(reason or "Try this server instead."))

    def proxy_failed(self, reply: bytes) -> list[Action]:
        self.dialogue.failed()  # back to the command state; the backend's answer is shown
        return [Reply(reply)]

    def tls_started(self) -> None:
        self.dialogue.settings = dataclasses.replace(self.dialogue.settings, secured=True,
                                                     tls_available=False)

    def handoff_extra(self) -> dict[str, str]:
        return {}


def frontend_factory(cfg: Config, tls_possible: bool) -> FrontendFactory:
    def make(facts: ConnectionFacts, mechanisms: tuple[MechanismInfo, ...]) -> Pop3Frontend:
        return Pop3Frontend(facts, mechanisms, cfg, tls_possible)
    return make


def prepare(config: Config) -> dict[str, object]:
    return prepare_login(config, "pop3", frontend_factory)


def run(ctx: ServiceContext) -> int:
    run_login(ctx, "pop3", frontend_factory)
    return 0
