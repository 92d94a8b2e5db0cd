"""The managesieve-login service: the ManageSieve pre-auth dialogue on the shared login server.

``run(ctx)`` is the master's entry point (protocol ``sieve``: the auth service name and the
``login/sieve`` hand-off socket, as Dovecot's). The dialogue is the sans-IO
:mod:`cote.login.managesieve_dialogue`; :class:`ManageSieveFrontend` feeds it parsed lines
and stops at the actions the server must carry out (auth, TLS, close).
"""

from __future__ import annotations

import asyncio
import dataclasses

from cote.auth.protocol.auth_client import MechanismInfo
from cote.config import Config
from cote.ipc import ServiceContext
from cote.login.actions import Action, Authenticate, Disconnect, Reply, StartTls
from cote.login.dialogue_frontend import DialogueFrontend, login_mechanisms
from cote.login.forward import Forwarded
from cote.login.managesieve_dialogue import (
    MAX_LOGIN_LINE,
    MAX_LOGIN_WORD,
    ManageSieveLogin,
    ManageSieveLoginSettings,
)
from cote.login.server import ConnectionFacts, FrontendFactory
from cote.login.service import prepare_tls, serve_login
from cote.mailproc.managesieve import wire
from cote.mailproc.managesieve.capability import capabilities

PROTOCOL = "sieve"
STOPPING = (Authenticate, StartTls, Disconnect)


class ManageSieveFrontend(DialogueFrontend[ManageSieveLogin]):
    def __init__(self, facts: ConnectionFacts, mechanisms: tuple[MechanismInfo, ...],
                 cfg: Config, tls_possible: bool) -> None:
        mechs = login_mechanisms(mechanisms)
        self.dialogue = ManageSieveLogin(ManageSieveLoginSettings(
            greeting=str(cfg.get("login_greeting")), capabilities=capabilities(cfg),
            mechanisms=mechs, secured=facts.secured,
            disable_plaintext_auth=bool(cfg.get("disable_plaintext_auth")),
            tls_available=tls_possible, tls_active=facts.tls))
        self.parser = wire.Parser(MAX_LOGIN_LINE, MAX_LOGIN_WORD, MAX_LOGIN_LINE)
        self.pending: list[Action] = []

    def feed(self, data: bytes) -> list[Action]:
        actions, self.pending = self.pending, []
        if data:
            self.parser.buffer += data
        while True:
            item = self.parser.next()
            if item is None:
                return actions
            step = self.dialogue.handle(item)
            actions += step
            if any(isinstance(a, STOPPING) for a in step):
                return actions  # the rest stays buffered until resume() or the hand-off

    def take_buffered(self) -> bytes:
        return self.parser.take_buffered()

    def discard_buffered(self) -> None:
        self.parser.take_buffered()

    def referral(self, user: str, host: str, port: int | None, reason: str | None
                 ) -> list[Action]:
        """RFC 5804 1.3's REFERRAL response code with a sieve:// URL."""
        self.dialogue.failed()
        where = host if port is None or port == 4190 else f"{host}:{port}"
        return [Reply(wire.no(reason or "Try this server instead.",
                              f'REFERRAL "sieve://{where}"'))]

    def proxy_failed(self, reply: bytes) -> list[Action]:
        self.dialogue.failed()
        return [Reply(reply)]

    def tls_started(self) -> None:
        d = self.dialogue
        d.settings = dataclasses.replace(d.settings, secured=True, tls_active=True)
        self.pending += d.tls_started()

    def handoff_extra(self) -> dict[str, str]:
        return {}

    def take_forwarded(self) -> Forwarded | None:
        return None

    def refusal(self, text: str) -> bytes:
        return wire.no(text)

    def goodbye(self, text: str) -> bytes:
        return wire.bye(text)


def frontend_factory(cfg: Config, tls_possible: bool) -> FrontendFactory:
    def make(facts: ConnectionFacts, mechanisms: tuple[MechanismInfo, ...]
             ) -> ManageSieveFrontend:
        return ManageSieveFrontend(facts, mechanisms, cfg, tls_possible)
    return make


def prepare(config: Config) -> dict[str, object]:
    return prepare_tls(config, PROTOCOL)


def run(ctx: ServiceContext) -> int:
    asyncio.run(serve_login(ctx, PROTOCOL, frontend_factory))
    return 0
