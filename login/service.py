"""Running a login service in its process: the one loop every ``*-login`` service shares.

Builds the server settings from the config (sockets in Dovecot's layout: base_dir/login, or
the chroot's root), serves the master's listeners, keeps the master's status channel
informed, and ends the process when the master says stop and the last client is gone (in
high-security mode, ``service_count = 1``, that is after the first client).
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
from collections.abc import Callable
from typing import Any

from cote.config import Config
from cote.ipc import ServiceContext
from cote.log import login_formatter
from cote.login.anvilclient import AnvilClient
from cote.login.proxy_session import ProxyNotify
from cote.login.server import (
    FrontendFactory,
    LoginServer,
    LoginServerSettings,
    networks,
    trusted_networks,
)
from cote.login.tlsconfig import ServerTls, server_tls

FactoryBuilder = Callable[[Config, bool], FrontendFactory]


def prepare_tls(config: Config, protocol: str) -> dict[str, Any]:
    """The master's pre-fork step for a login service (``prepare`` in the process contract):
    certificates and keys are read as root, before the chroot, and again on every reload."""
    return {"tls": server_tls(config, protocol)}


def server_settings(ctx: ServiceContext, cfg: Config, protocol: str) -> LoginServerSettings:
    chrooted = bool(ctx.settings.get("chroot")) if ctx.settings is not None else False
    root = "/" if chrooted else os.path.join(ctx.base_dir, "login")
    tls = ctx.extra["tls"] if "tls" in ctx.extra else server_tls(ctx.config, protocol)
    assert tls is None or isinstance(tls, ServerTls)
    return LoginServerSettings(
        protocol=protocol, auth_socket=os.path.join(root, "login"),
        mail_socket=os.path.join(root, protocol), tls=tls.context if tls else None,
        client_cert_field=tls.username_field if tls and tls.verify_client else None,
        require_client_cert=bool(cfg.get("auth_ssl_require_client_cert")),
        trusted_networks=trusted_networks(cfg), formatter=login_formatter(cfg), log=ctx.log,
        haproxy_trusted_networks=networks(str(cfg.get("haproxy_trusted_networks"))),
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


async def serve_login(ctx: ServiceContext, protocol: str, make_factory: FactoryBuilder) -> None:
    loop = asyncio.get_running_loop()
    ctx.install_asyncio_handlers(loop)
    cfg = ctx.config.lookup(protocol=protocol)
    settings = server_settings(ctx, cfg, protocol)
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
    server = LoginServer(settings, make_factory(cfg, settings.tls is not None))
    listeners = [(lst.sock, lst.ssl, lst.haproxy) for lst in ctx.listeners
                 if lst.kind == "inet" and lst.sock is not None]
    raise_fd_limit(ctx.client_limit)
    server.serve(listeners, lambda: ctx.accepting and ctx.available() > 0)
    loop.add_signal_handler(signal.SIGUSR2, server.drop_oldest_unauthenticated)
    ctx.on_stop_accepting(stop)
    ctx.status.report(ctx.available())
    await done.wait()
    server.auth.close()
