"""The pop3-login service: the POP3 pre-auth dialogue on the shared login server.

``run(ctx)`` is the entry point the master calls in a forked pop3-login process (see
docs/process-contract.md). The dialogue itself is the sans-IO :mod:`cote.login.pop3_dialogue`;
:class:`Pop3Frontend` feeds it lines and stops at the actions the server must carry out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import secrets
import socket
import time

from cote.auth.protocol.auth_client import MechanismInfo, MechFlag
from cote.config import Config
from cote.ipc import ServiceContext
from cote.log import login_formatter
from cote.login.actions import Action, Authenticate, Disconnect, StartTls
from cote.login.pop3_dialogue import Mechanism, Pop3Login, Pop3LoginSettings
from cote.login.server import (
    ConnectionFacts,
    LoginServer,
    LoginServerSettings,
    trusted_networks,
)
from cote.login.tlsconfig import server_context
from cote.mailproc.pop3 import wire

_apop_counter = itertools.count(1)
STOPPING = (Authenticate, StartTls, Disconnect)


def apop_timestamp() -> str:
    """A unique RFC 1939 timestamp ``<pid.counter.time.random@host>`` for the greeting."""
    return (f"<{os.getpid():x}.{next(_apop_counter):x}.{int(time.time()):x}."
            f"{secrets.token_urlsafe(16)}@{socket.gethostname()}>")


class Pop3Frontend:
    def __init__(self, facts: ConnectionFacts, mechanisms: tuple[MechanismInfo, ...],
                 cfg: Config, tls_possible: bool) -> None:
        mechs = tuple(Mechanism(m.name, plaintext=bool(m.flags & MechFlag.PLAINTEXT),
                                private=bool(m.flags & MechFlag.PRIVATE) or m.name == "APOP")
                      for m in mechanisms)
        apop = apop_timestamp() if any(m.name == "APOP" for m in mechs) else None
        self.dialogue = Pop3Login(Pop3LoginSettings(
            greeting=str(cfg.get("login_greeting")), mechanisms=mechs, secured=facts.secured,
            disable_plaintext_auth=bool(cfg.get("disable_plaintext_auth")),
            tls_available=tls_possible and not facts.tls, apop_timestamp=apop))
        self.lines = wire.LineReader()

    @property
    def user(self) -> str | None:
        return self.dialogue.user

    @property
    def mechanism(self) -> str | None:
        return self.dialogue.mechanism

    def greeting(self) -> bytes:
        return self.dialogue.greeting()

    def feed(self, data: bytes) -> list[Action]:
        actions: list[Action] = []
        for line in self.lines.lines(data):
            if isinstance(line, wire.LineTooLong):
                return actions + self.dialogue.line_too_long()
            step = self.dialogue.handle_line(line)
            actions += step
            if any(isinstance(a, STOPPING) for a in step):
                break  # the rest stays buffered until resume() or the hand-off
        return actions

    def resume(self) -> list[Action]:
        return self.feed(b"")

    def take_buffered(self) -> bytes:
        return self.lines.take_buffered()

    def discard_buffered(self) -> None:
        self.lines.take_buffered()

    def challenge(self, data: bytes) -> list[Action]:
        return self.dialogue.challenge(data)

    def failed(self, reason: str | None, *, temporary: bool) -> list[Action]:
        return self.dialogue.failed(reason, temporary=temporary)

    def succeeded(self) -> None:
        self.dialogue.succeeded()

    def tls_started(self) -> None:
        self.dialogue.settings = dataclasses.replace(self.dialogue.settings, secured=True,
                                                     tls_available=False)


def server_settings(ctx: ServiceContext, cfg: Config) -> LoginServerSettings:
    chrooted = bool(ctx.settings.get("chroot")) if ctx.settings is not None else False
    # Dovecot's layout: the auth socket for logins and the mail service's socket both live in
    # base_dir/login, which is the root directory of a chrooted login process.
    root = "/" if chrooted else os.path.join(ctx.base_dir, "login")
    return LoginServerSettings(
        protocol="pop3", auth_socket=os.path.join(root, "login"),
        mail_socket=os.path.join(root, "pop3"), tls=server_context(cfg),
        trusted_networks=trusted_networks(cfg), formatter=login_formatter(cfg), log=ctx.log)


async def serve(ctx: ServiceContext) -> None:
    loop = asyncio.get_running_loop()
    ctx.install_asyncio_handlers(loop)
    cfg = ctx.config.lookup(protocol="pop3")
    settings = server_settings(ctx, cfg)
    tls_possible = settings.tls is not None
    done = asyncio.Event()
    previous = 0

    def on_count(count: int) -> None:
        nonlocal previous
        for _ in range(count - previous):
            ctx.client_connected()
        for _ in range(previous - count):
            ctx.client_disconnected()
        previous = count
        if not ctx.accepting:
            for s in servers:
                s.close()
        if ctx.should_exit():
            done.set()

    settings.on_client_count = on_count
    server = LoginServer(settings, lambda facts, mechs: Pop3Frontend(facts, mechs, cfg,
                                                                     tls_possible))
    listeners = [(lst.sock, lst.ssl) for lst in ctx.listeners
                 if lst.kind == "inet" and lst.sock is not None]
    servers = await server.serve(listeners)

    def stop() -> None:
        for s in servers:
            s.close()
        if ctx.should_exit():
            done.set()

    ctx.on_stop_accepting(stop)
    ctx.status.report(ctx.available())
    await done.wait()
    server.auth.close()


def run(ctx: ServiceContext) -> int:
    asyncio.run(serve(ctx))
    return 0
