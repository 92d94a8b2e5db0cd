"""The imap service: receives an authenticated client from imap-login and serves its mail.

``run(ctx)`` is the master's entry point (service ``imap``). As the pop3 service does, the
process starts as root, takes one hand-off on its ``login/imap`` socket, confirms the login
with the auth daemon (auth-master REQUEST: nothing the login process says about the user is
believed), answers the login process, drops to the user's uid/gid and only then opens mail.
It then writes the tagged ``OK [CAPABILITY …] Logged in`` for the client's LOGIN or
AUTHENTICATE (imap-login passes the tag, and whether the client already asked for
CAPABILITY, in the hand-off's ``imap_tag``/``imap_capability_sent``). One process, one user.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

from cote.config import Config
from cote.handoff import HandoffRequest
from cote.ipc import ServiceContext
from cote.log import Logger, mail_log_prefix
from cote.mailproc.anvilreg import register_session
from cote.mailproc.channel import Channel
from cote.mailproc.handoffservice import (
    RETIRE,
    prepare_service,
    prepared_settings,
    run_service,
)
from cote.mailproc.mailuser import (
    MailUser,
    MailUserError,
    became_another,
    drop_privileges,
    resolve,
)
from cote.mailproc.userdb import MasterConnection, UserdbError, UserNotFound, lookup_user
from cote.storage import StorageError
from cote.storage.api import ChangeWatcher
from cote.storage.namespaces import Namespaces

from . import hibernate as H
from . import response as R
from .connection import Connection
from .hibernate_session import RestoredSession, capture, restore
from .hibernate_state import HibernateState, HibernateStateError, decode
from .server import HIBERNATING, Hibernation, serve
from .session import SERVERBUG, Session, autocreate
from .settings import ImapSettings, _seconds


def login_reply(request: HandoffRequest, settings: ImapSettings) -> bytes:
    """What Dovecot's imap process writes first: the LOGIN/AUTHENTICATE command's reply."""
    tag = request.extra.get("imap_tag") or "*"
    if request.extra.get("imap_capability_sent"):
        return R.capability(settings.capability) + R.tagged(tag, "OK", "Logged in")
    return R.tagged(tag, "OK", "Logged in", R.capability_code(settings.capability))


def userdb_lookup(cfg: Config, log: Logger) -> Callable[[str], Mapping[str, str] | None]:
    """Shared namespaces' ``%%u``/``%%h``: another user's home and mail location from an
    auth-userdb USER lookup (the process already runs as the user: auth-master is root's)."""
    path = os.path.join(str(cfg.get("base_dir")), "auth-userdb")

    def lookup(name: str) -> Mapping[str, str] | None:
        try:
            reply = lookup_user(path, name, {"service": "imap"})
            other = resolve(cfg, reply.user, reply.fields, "imap")
        except UserNotFound:
            return None
        except (UserdbError, MailUserError) as e:
            log.error(f"shared namespace: userdb lookup for {name} failed: {e}")
            return None
        return {**reply.fields, "home": other.home or "", "mail": other.mail_location}

    return lookup


def _open_session(cfg: Config, user: MailUser, log: Logger, kind: type[Session] = Session,
                  settings: ImapSettings | None = None) -> Session | None:
    """The user's storage and a new Session on it; None (logged) when storage fails.
    ``settings``: read from ``cfg`` by the master before the fork (``prepare``)."""
    settings = settings or ImapSettings.from_config(cfg)
    try:
        mailboxes = Namespaces.from_config(cfg, user.fields, user=user.user,
                                           mail_location=user.mail_location, home=user.home,
                                           service="imap", user_lookup=userdb_lookup(cfg, log))
        autocreate(mailboxes, settings)
    except StorageError as e:
        log.error(f"Couldn't open mail storage: {e}")
        return None
    max_line = cfg.get("imap_max_line_length")
    conn = Connection(commands=settings.commands(),
                      max_line_length=int(max_line) if isinstance(max_line, int) else None)
    return kind(mailboxes, conn, user.user, settings, log)


def hibernate_timeout(cfg: Config) -> float:
    """``imap_hibernate_timeout`` in seconds (0: never hibernate, Dovecot's default)."""
    return _seconds(cfg.get("imap_hibernate_timeout"), 0.0)


def _hibernation(cfg: Config, client: socket.socket, log: Logger, *, session_id: str,
                 remote_ip: str, local_ip: str, idle_started: float | None = None
                 ) -> Hibernation | None:
    timeout = hibernate_timeout(cfg)
    if timeout <= 0:
        return None
    path = os.path.join(str(cfg.get("base_dir")), H.SOCKET_NAME)

    def hand_off(session: Session, watcher: ChangeWatcher | None, bytes_out: int,
                 idle_started: float) -> bool:
        state = capture(session, session_id=session_id, remote_ip=remote_ip,
                        local_ip=local_ip, idle_started=idle_started, bytes_out=bytes_out)
        dirs: list[str] | None = None
        if session.box is not None:
            dirs = getattr(watcher, "dirs", None)
            if not dirs:
                return False

        def changed() -> bool:
            return watcher is not None and watcher.wait(0)

        try:
            error = H.hand_off(path, client.fileno(), dirs, state, changed)
        except H.HandOffDeclined:
            return False
        if error:
            log.error(f"Couldn't hibernate: {error}")
            return False
        return True

    return Hibernation(timeout, hand_off, idle_started)


def _serve_mail(cfg: Config, user: MailUser, client: socket.socket, request: HandoffRequest,
                log: Logger, *, settings: ImapSettings | None = None) -> int:
    session = _open_session(cfg, user, log, settings=settings)
    if session is None:
        client.sendall(R.untagged("BYE", SERVERBUG))
        client.close()
        return 1
    hibernation = _hibernation(cfg, client, log, session_id=request.session,
                               remote_ip=request.remote_ip, local_ip=request.local_ip)

    try:
        reason = serve(Channel(client), session, log, pipelined=request.pipelined,
                       greeting=login_reply(request, session.settings), hibernation=hibernation)
    finally:
        client.close()
    return RETIRE if reason == HIBERNATING else 0


def _resume(cfg: Config, user: MailUser, state: HibernateState, client: socket.socket, *,
            log: Logger) -> int:
    """As the user: restore the session and go on serving it."""
    session = _open_session(cfg, user, log, RestoredSession)
    if session is None:
        client.sendall(R.untagged("BYE", SERVERBUG))
        return 1
    try:
        watcher = restore(session, state)
    except StorageError as e:
        log.error(f"Couldn't restore the hibernated session: {e}")
        client.sendall(R.untagged("BYE", SERVERBUG))
        return 1
    hibernation = _hibernation(cfg, client, log, session_id=state.session,
                               remote_ip=state.remote_ip, local_ip=state.local_ip,
                               idle_started=state.idle_started)

    reason = serve(Channel(client), session, log, greeting=b"", hibernation=hibernation,
                   watcher=watcher, bytes_in=state.stats.get("bytes_in", 0),
                   bytes_out=state.stats.get("bytes_out", 0) + state.added_out)
    return RETIRE if reason == HIBERNATING else 0


def _trusted_peer(conn: socket.socket, path: str) -> bool:
    """imap-master is for imap-hibernate only: root or the listener's owner (the
    ``unix_listener imap-master { user }`` imap-hibernate runs as)."""
    try:
        uid = H.peer_uid(conn)
        return uid == 0 or uid == os.stat(path).st_uid
    except OSError:
        return False


def unhibernate(ctx: ServiceContext, cfg: Config, conn: socket.socket, path: str,
                auth_master: MasterConnection | None = None) -> int:
    """Take a client back from imap-hibernate on ``imap-master``: the user is looked up
    again through auth-master (``auth_master``: the connection a process serving several
    clients keeps), never taken from the state alone."""
    conn.settimeout(H.SEND_TIMEOUT)
    fds: list[int] = []
    try:
        if not _trusted_peer(conn, path):
            raise HibernateStateError("peer is not imap-hibernate")
        line, fds = H.receive_state(conn)
        if len(fds) != 1:
            raise HibernateStateError(f"expected 1 fd, got {len(fds)}")
        state = decode(line)
        reply = lookup_user(os.path.join(ctx.base_dir, "auth-master"), state.user,
                            {"service": "imap", "rip": state.remote_ip,
                             "lip": state.local_ip, "session": state.session},
                            via=auth_master)
        user = resolve(cfg, reply.user, reply.fields, "imap",
                       {"session": state.session, "remote_ip": state.remote_ip,
                        "local_ip": state.local_ip, "pid": str(os.getpid())})
        if state.peer_uid >= 0 and user.uid != state.peer_uid:
            raise HibernateStateError(f"user {state.user} is uid {user.uid}, the session "
                                      f"was hibernated by uid {state.peer_uid}")
        if became_another(user):  # a process that already served another uid
            ctx.stop_accepting()
            raise HibernateStateError(f"this process serves uid {os.getuid()}, user "
                                      f"{state.user} is uid {user.uid}")
    except (OSError, HibernateStateError, UserdbError, UserNotFound, MailUserError,
            ValueError) as e:
        ctx.log.error(f"Couldn't unhibernate a client: {e}")
        for fd in fds:
            os.close(fd)
        try:
            conn.sendall(f"-{e}\n".encode())
        except OSError:
            pass
        return 1
    client = socket.socket(fileno=fds[0])
    try:
        conn.sendall(b"+\n")
    except OSError:
        pass  # imap-hibernate has gone; the client is ours now all the same
    log = ctx.log.with_prefix(mail_log_prefix(cfg, {
        "service": "imap", "user": user.user, "pid": str(os.getpid()),
        "session": state.session}))
    ctx.set_title(f"{user.user} {state.remote_ip}")
    registration = register_session(ctx.anvil, "imap", state.remote_ip, user.user)
    try:
        drop_privileges(user, cfg)
        return _resume(cfg, user, state, client, log=log)
    except MailUserError as e:
        log.error(str(e))
        try:
            client.sendall(R.untagged("BYE", SERVERBUG))
        except OSError:
            pass
        return 1
    finally:
        registration.close()
        client.close()


def prepare(config: Config) -> dict[str, Any]:
    """In the master, before forking: see ``prepare_service``."""
    return prepare_service(config, "imap", ImapSettings.from_config)


def run(ctx: ServiceContext) -> int:
    """Wait for one client: a hand-off from imap-login (``login/imap``) or a hibernated
    session coming back from imap-hibernate (``imap-master``); serve it; exit."""
    settings = prepared_settings(ctx, ImapSettings)

    def serve_mail(cfg: Config, user: MailUser, client: socket.socket,
                   request: HandoffRequest, log: Logger) -> int:
        return _serve_mail(cfg, user, client, request, log, settings=settings)

    return run_service(ctx, "imap", serve_mail, failure_reason=SERVERBUG,
                       failure_line=R.untagged("BYE", SERVERBUG),
                       others={H.MASTER_SOCKET_NAME: unhibernate})
