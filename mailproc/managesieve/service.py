"""The managesieve service: receives an authenticated client from managesieve-login.

``run(ctx)`` is the master's entry point; the hand-off (auth-master REQUEST, anvil, dropping
to the user) is the one :mod:`cote.mailproc.handoffservice` shares with imap and pop3. Then
the user's scripts are served from Pigeonhole's file storage, located by the ``sieve``
setting (plugin section or userdb field) with ``~`` the user's home.
"""

from __future__ import annotations

import asyncio
import socket

from cote.config import Config
from cote.config.values import parse_size
from cote.handoff import HandoffRequest
from cote.ipc import ServiceContext
from cote.log import Logger
from cote.mailproc.handoffservice import run_service
from cote.mailproc.mailuser import MailUser
from cote.mailproc.managesieve import wire
from cote.mailproc.managesieve.capability import capabilities, sieve_extensions
from cote.mailproc.managesieve.server import serve
from cote.mailproc.managesieve.session import Session
from cote.mailproc.managesieve.storage import (
    DEFAULT_LOCATION,
    Quota,
    ScriptStorage,
    parse_location,
)

SERVICE = "managesieve"
PROTOCOL = "sieve"


def settings(cfg: Config, user: MailUser) -> dict[str, str]:
    """Plugin settings with the userdb's fields over them (``plugin/`` prefix optional)."""
    merged = cfg.plugin()
    for key, value in user.fields.items():
        merged[key.removeprefix("plugin/")] = value
    return merged


def _size(text: str | None, default: int) -> int:
    if not text:
        return default
    try:
        return parse_size(text)
    except ValueError:
        return default


def open_storage(cfg: Config, user: MailUser) -> ScriptStorage:
    plugin = settings(cfg, user)
    home = user.home or ""
    script_dir, active = parse_location(plugin.get("sieve", DEFAULT_LOCATION), home)
    quota = Quota(max_scripts=int(plugin.get("sieve_quota_max_scripts", "0") or 0)
                  if plugin.get("sieve_quota_max_scripts", "0").isdigit() else 0,
                  max_storage=_size(plugin.get("sieve_quota_max_storage"), 0),
                  max_script_size=_size(plugin.get("sieve_max_script_size"), 1024 * 1024))
    return ScriptStorage(script_dir, active, quota, fsync=cfg.get("mail_fsync") != "never")


def _serve(cfg: Config, user: MailUser, client: socket.socket, request: HandoffRequest,
           log: Logger) -> int:
    location = settings(cfg, user).get("sieve", DEFAULT_LOCATION)
    if "~" in location and not user.home:
        log.error(f"sieve: home directory not set for user, cannot use {location}")
        try:
            client.sendall(b'BYE "Internal error occurred. Refer to server log for more '
                           b'information."\r\n')
        finally:
            client.close()
        return 1
    try:
        session = Session(open_storage(cfg, user), capabilities(cfg, after_login=True),
                          int(cfg.get("managesieve_max_compile_errors") or 5),
                          frozenset(sieve_extensions(cfg)),
                          global_scripts=bool(settings(cfg, user).get("sieve_global")))
        max_line = int(cfg.get("managesieve_max_line_length") or wire.MAX_LINE)
        # a script literal over sieve_max_script_size is refused without being buffered
        max_literal = session.storage.quota.max_script_size or wire.MAX_LITERAL

        async def run_session() -> None:
            reader, writer = await asyncio.open_connection(sock=client)
            await serve(reader, writer, session, log, pipelined=request.pipelined,
                        max_line=max_line, max_literal=max_literal,
                        logout_format=str(cfg.get("managesieve_logout_format")))

        asyncio.run(run_session())
    finally:
        client.close()
    return 0


def run(ctx: ServiceContext) -> int:
    return run_service(ctx, PROTOCOL, _serve,
                       failure_reason="Internal error occurred. Refer to server log for more "
                                      "information.",
                       failure_line=b'BYE "Internal error occurred."\r\n', log_name=SERVICE)
