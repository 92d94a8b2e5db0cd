"""Running a login service in its process: the one loop every ``*-login`` service shares.

Builds the server settings from the config (sockets in Dovecot's layout: base_dir/login, or
the chroot's root), serves the master's listeners, keeps the master's status channel
informed, and ends the process when the master says stop and the last client is gone (in
high-security mode, ``service_count = 1``, that is after the first client).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import resource
import signal
import socket
from asyncio import sslproto
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from cote.auth.protocol.auth_client import ClientConnection, MechanismInfo, MechFlag
from cote.config import Config
from cote.handoff import HandoffReply, HandoffRequest
from cote.ipc import ServiceContext
from cote.log import LoginLogFormatter, login_formatter
from cote.login.anvilclient import AnvilClient
from cote.login.proxy_session import ProxyNotify
from cote.login.server import (
    ConnectionFacts,
    FrontendFactory,
    LoginServer,
    LoginServerSettings,
    networks,
    new_session_id,
    trusted_networks,
)
from cote.login.tlsconfig import ServerTls, server_tls

FactoryBuilder = Callable[[Config, bool], FrontendFactory]


def prepare_tls(config: Config, protocol: str) -> dict[str, Any]:
    """The master's pre-fork step for a login service (``prepare`` in the process contract):
    certificates and keys are read as root, before the chroot, and again on every reload."""
    return {"tls": server_tls(config, protocol)}


@dataclass(frozen=True, slots=True)
class PreparedLogin:
    """What every process of a login service computes the same way from the config: built
    once by the master before it forks (with ``service_count = 1`` that is once instead of
    once per client), inherited by each child."""

    cfg: Config
    tls: ServerTls | None
    factory: FrontendFactory
    trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    haproxy_trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    formatter: LoginLogFormatter


def prepare_login(config: Config, protocol: str, make_factory: FactoryBuilder
                  ) -> dict[str, Any]:
    """``prepare`` for imap-login/pop3-login: the TLS contexts and the settings above."""
    tls = server_tls(config, protocol)
    prepared = _prepared(config, protocol, make_factory, tls)
    with contextlib.suppress(Exception):  # only a speed-up: never a reason not to start
        warm_up(prepared, protocol)
    return {"tls": tls, "login": prepared}


def _prepared(config: Config, protocol: str, make_factory: FactoryBuilder,
              tls: ServerTls | None) -> PreparedLogin:
    cfg = config.lookup(protocol=protocol)
    return PreparedLogin(cfg=cfg, tls=tls, factory=make_factory(cfg, tls is not None),
                         trusted=trusted_networks(cfg),
                         haproxy_trusted=networks(str(cfg.get("haproxy_trusted_networks"))),
                         formatter=login_formatter(cfg))


WARM_UP_ROUNDS = 16
_SAMPLE_DIALOGUE = {"imap": b'a CAPABILITY\r\nb ID ("name" "x")\r\nc LOGIN u p\r\n',
                    "pop3": b"CAPA\r\nUSER u\r\nPASS p\r\n"}


def warm_up(prepared: PreparedLogin, protocol: str) -> None:
    """Run a client's code paths a few times in the master, before it forks: Python rewrites
    a function's bytecode with specialised instructions once it has run a few times, and a
    child doing that itself pays for it once per process (and copies the pages it writes).
    Done here, every login process starts with the work done and the pages shared."""
    mechanisms = (MechanismInfo("PLAIN", MechFlag.PLAINTEXT),
                  MechanismInfo("LOGIN", MechFlag.PLAINTEXT))
    values = {"user": "u", "mechanism": "PLAIN", "remote_ip": "127.0.0.1",
              "local_ip": "127.0.0.1", "remote_port": "1", "local_port": "2", "mail_pid": "3",
              "secured": "secured", "session": "s", "service": protocol, "pid": "4"}
    handshake = (b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\n"
                 b"SPID\t1\nCUID\t1\nCOOKIE\t" + b"0" * 32 + b"\nDONE\n")
    for _ in range(WARM_UP_ROUNDS):
        facts = ConnectionFacts("127.0.0.1", 143, "127.0.0.2", 40000, new_session_id(),
                                False, True)
        frontend = prepared.factory(facts, mechanisms)
        frontend.greeting()
        frontend.feed(_SAMPLE_DIALOGUE.get(protocol, b""))
        frontend.handoff_extra()
        prepared.formatter.format("Login", values)
        codec = ClientConnection()
        codec.feed(handshake)
        ClientConnection.auth(1, "PLAIN", service=protocol, params=values, flags=["secured"],
                              initial_response=b"\0u\0p")
        codec.feed(b"OK\t1\tuser=u\n")
        HandoffRequest(auth_pid=1, auth_id=1, client_pid=1, cookie="00", user="u",
                       mechanism="PLAIN", local_ip="127.0.0.1", local_port=143,
                       remote_ip="127.0.0.2", remote_port=40000, session=facts.session,
                       secured=True, tls=False, extra=frontend.handoff_extra()).encode()
        HandoffReply.decode(b'{"ok":true,"mail_pid":1}\n')
        run_loop(_exercise_streams())


async def _exercise_streams() -> None:
    """What a login process does with asyncio: a loop, a stream connection, a line each way.
    (The loop and sockets are closed again: nothing here is inherited but warmed code.)"""
    ours, theirs = socket.socketpair()
    with theirs:
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        theirs.sendall(b"hello\n")
        await reader.readline()
        writer.write(b"ok\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()


def prepared_login(ctx: ServiceContext, protocol: str, make_factory: FactoryBuilder
                   ) -> PreparedLogin:
    """The master's :class:`PreparedLogin`, or the same built here (a service without it)."""
    prepared = ctx.extra.get("login")
    if isinstance(prepared, PreparedLogin):
        return prepared
    tls = ctx.extra["tls"] if "tls" in ctx.extra else server_tls(ctx.config, protocol)
    assert tls is None or isinstance(tls, ServerTls)
    return _prepared(ctx.config, protocol, make_factory, tls)


def server_settings(ctx: ServiceContext, prepared: PreparedLogin, protocol: str
                    ) -> LoginServerSettings:
    chrooted = bool(ctx.settings.get("chroot")) if ctx.settings is not None else False
    root = "/" if chrooted else os.path.join(ctx.base_dir, "login")
    tls, cfg = prepared.tls, prepared.cfg
    return LoginServerSettings(
        protocol=protocol, auth_socket=os.path.join(root, "login"),
        mail_socket=os.path.join(root, protocol), tls=tls.context if tls else None,
        client_cert_field=tls.username_field if tls and tls.verify_client else None,
        require_client_cert=bool(cfg.get("auth_ssl_require_client_cert")),
        trusted_networks=prepared.trusted, formatter=prepared.formatter, log=ctx.log,
        haproxy_trusted_networks=prepared.haproxy_trusted,
        haproxy_timeout=float(cfg.get("haproxy_timeout")), anvil=AnvilClient(ctx.anvil),
        max_userip_connections=int(cfg.get("mail_max_userip_connections")),
        login_proxy_max_disconnect_delay=float(cfg.get("login_proxy_max_disconnect_delay")),
        proxy_notify=ProxyNotify(os.path.join(root, "proxy-notify"), ctx.log))


def raise_fd_limit(client_limit: int) -> None:
    """Room for every client's socket plus its relay/backend socket and a few of our own."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = client_limit * 2 + 64
    if soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        except (ValueError, OSError):
            pass  # keep what we have; accept() errors will be logged


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """``asyncio.run`` without what a login process does not use (the SIGINT handler, the
    context copy, async generator and executor shutdown): in a forked process that costs
    ~0.5 ms and ~100 copied pages per process, i.e. per client with ``service_count = 1``.
    Tasks left at the end are cancelled and finished, as asyncio.run does."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main)
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
    finally:
        loop.close()


# asyncio's SSLProtocol (Python 3.11) gives every TLS connection a zero-filled read buffer of
# `max_size` = 256 KiB, so 1,000 idle TLS clients proxied by one login process would hold
# 256 MB. A TLS record carries at most 16 KiB, so reading 32 KiB at a time costs nothing;
# bench idle-memory (TLS, 1,000 clients): 0.30 MB per connection before.
TLS_READ_BUFFER = 32 * 1024


def run_login(ctx: ServiceContext, protocol: str, make_factory: FactoryBuilder) -> None:
    """A login service process's entry point."""
    run_loop(serve_login(ctx, protocol, make_factory))


async def serve_login(ctx: ServiceContext, protocol: str, make_factory: FactoryBuilder) -> None:
    sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
    loop = asyncio.get_running_loop()
    ctx.install_asyncio_handlers(loop)
    prepared = prepared_login(ctx, protocol, make_factory)
    settings = server_settings(ctx, prepared, protocol)
    done = asyncio.Event()
    previous = 0

    def on_count(count: int) -> None:
        nonlocal previous
        for _ in range(count - previous):
            ctx.client_connected()
        for _ in range(previous - count):
            ctx.client_disconnected()
        left = count < previous
        previous = count
        if not ctx.accepting:
            server.stop_accepting()
        elif left:
            server.resume_accepting()  # room again in a process that was full
        if ctx.should_exit():
            done.set()

    def stop() -> None:
        server.stop_accepting()
        if ctx.should_exit():
            done.set()

    settings.on_client_count = on_count
    server = LoginServer(settings, prepared.factory)
    listeners = [(lst.sock, lst.ssl, lst.haproxy) for lst in ctx.listeners
                 if lst.kind == "inet" and lst.sock is not None]
    raise_fd_limit(ctx.client_limit)
    server.serve(listeners, lambda: ctx.accepting and ctx.available() > 0)
    loop.add_signal_handler(signal.SIGUSR2, server.drop_oldest_unauthenticated)
    ctx.on_stop_accepting(stop)
    ctx.status.report(ctx.available())
    await done.wait()
    server.auth.close()
