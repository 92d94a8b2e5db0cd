"""What the imap and pop3 services share: taking hand-offs from login processes.

Both start as root (warm, from the master's fork), take a hand-off on a ``login/<proto>``
socket, ask the auth daemon to confirm the login (auth-master REQUEST: nothing the login
process says about who the user is is believed), answer the login process, register the
session with anvil and only then, as the user, serve mail. With ``service_count != 1`` the
process then takes the next hand-off, one client at a time, for users of the uid and gid it
became; a user of another one goes back to the login process for another process. The
protocol-specific part is the ``serve`` callback.
"""

from __future__ import annotations

import os
import select
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar

from cote.config import Config, ConfigError
from cote.handoff import MAX_MESSAGE, HandoffError, HandoffReply, HandoffRequest
from cote.ipc import ServiceContext
from cote.log import Logger, mail_log_prefix, unquote
from cote.mailproc.anvilreg import register_session
from cote.mailproc.mailuser import (
    MailUser,
    MailUserError,
    became_another,
    drop_privileges,
    has_become_a_user,
    resolve,
)
from cote.mailproc.userdb import (
    MasterConnection,
    UserdbError,
    UserNotFound,
    confirm_login,
    connect,
    lookup_user,
)
from cote.variables import VariableError, cached_template

HANDOFF_TIMEOUT = 30.0
#: What a service's ``serve`` returns when its client went on elsewhere (to imap-hibernate):
#: the process then exits instead of waiting for another client, so that a thousand IDLE
#: clients do not leave a thousand idle processes behind them.
RETIRE = -1

#: serve(cfg, user, client, request, log) -> exit code; runs as the user
ServeMail = Callable[[Config, MailUser, socket.socket, HandoffRequest, Logger], int]


def receive_handoff(conn: socket.socket) -> tuple[HandoffRequest, socket.socket]:
    """Read the hand-off line and the client's socket that came with it."""
    conn.settimeout(HANDOFF_TIMEOUT)
    data, fds = b"", []
    while not data.endswith(b"\n"):
        chunk, new_fds, _, _ = socket.recv_fds(conn, MAX_MESSAGE, 2)
        fds += new_fds
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_MESSAGE:
            break
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise HandoffError(f"expected one client socket, got {len(fds)}")
    client = socket.socket(fileno=fds[0])
    try:
        return HandoffRequest.decode(data), client
    except HandoffError:
        client.close()
        raise


def _answer(conn: socket.socket, reply: HandoffReply) -> None:
    try:
        conn.sendall(reply.encode())
    except OSError:
        pass
    conn.close()


def serve_handoff(ctx: ServiceContext, cfg: Config, conn: socket.socket, service: str,
                  serve: ServeMail, *, failure_reason: str, failure_line: bytes,
                  auth_master: MasterConnection | None = None, keep_auth: bool = False,
                  log_name: str | None = None) -> int:
    """Take one hand-off on ``conn`` and serve its client. ``failure_reason`` goes back to
    the login process when the user cannot be confirmed; ``failure_line`` to the client when
    the process cannot become the user; ``auth_master``: a connection opened while waiting
    (``keep_auth``: left open for the process's next client)."""
    try:
        request, client = receive_handoff(conn)
    except (OSError, HandoffError) as e:
        ctx.log.error(f"Invalid hand-off from a login process: {e}")
        return 1
    if has_become_a_user() and _may_be_another_identity(ctx, cfg, request, service,
                                                        auth_master):
        # Before the login is confirmed (that uses it up): the login process gives the
        # client to another process of the service; this one takes no more clients.
        ctx.stop_accepting()
        _answer(conn, HandoffReply(False, reason=failure_reason, retry=True))
        client.close()
        return 0
    try:
        reply = confirm_login(os.path.join(ctx.base_dir, "auth-master"),
                              auth_pid=request.auth_pid, client_pid=request.client_pid,
                              client_id=request.auth_id, cookie=bytes.fromhex(request.cookie),
                              ready=auth_master, keep=keep_auth)
        extra = {"session": request.session, "remote_ip": request.remote_ip,
                 "local_ip": request.local_ip, "pid": str(os.getpid())}
        user = resolve(cfg, reply.user, reply.fields, service, extra)
    except (UserdbError, UserNotFound, MailUserError, ValueError) as e:
        ctx.log.error(f"Login for {request.user} could not be confirmed: {e}")
        _answer(conn, HandoffReply(False, reason=failure_reason))
        client.close()
        return 1
    if became_another(user):
        # The userdb said otherwise before the REQUEST (e.g. a passdb's userdb_uid): as
        # Dovecot with service_count != 1, the login fails; this process takes no more.
        ctx.log.error(f"{service}: this process serves uid {os.getuid()} gid {os.getgid()}; "
                      f"{user.user} has uid {user.uid} gid {user.gid} (service {service} "
                      f"{{ service_count = 1 }} is needed when users have different UIDs)")
        ctx.stop_accepting()
        _answer(conn, HandoffReply(False, reason=failure_reason))
        client.close()
        return 1
    _answer(conn, HandoffReply(True, mail_pid=os.getpid()))
    # %s in mail_log_prefix: the master's service name ("managesieve" for protocol sieve)
    log = ctx.log.with_prefix(mail_log_prefix(cfg, {
        "service": log_name or service, "user": user.user, "pid": str(os.getpid()),
        "session": request.session}))
    ctx.set_title(f"{user.user} {request.remote_ip}")
    registration = register_session(ctx.anvil, service, request.remote_ip, user.user)
    try:
        drop_privileges(user, cfg)
        return serve(cfg, user, client, request, log)
    except MailUserError as e:
        log.error(str(e))
        try:
            client.sendall(failure_line)
        except OSError:
            pass
        client.close()
        return 1
    finally:
        registration.close()


def _may_be_another_identity(ctx: ServiceContext, cfg: Config, request: HandoffRequest,
                             service: str, auth_master: MasterConnection | None) -> bool:
    """For a process that already became a user (``service_count != 1``): whether the user
    of this hand-off may need another uid or gid, asked of the userdb (a USER lookup leaves
    the login's REQUEST for whichever process serves it). A config that allows one uid and
    one gid only needs no question."""
    if int(cfg.get("first_valid_uid")) == int(cfg.get("last_valid_uid")) \
            and int(cfg.get("first_valid_gid")) == int(cfg.get("last_valid_gid")):
        return False
    try:
        reply = lookup_user(os.path.join(ctx.base_dir, "auth-master"), request.user,
                            {"service": service, "rip": request.remote_ip,
                             "lip": request.local_ip}, via=auth_master)
        return became_another(resolve(cfg, reply.user, reply.fields, service))
    except (UserdbError, UserNotFound, MailUserError, ValueError):
        return False  # the REQUEST will tell


#: other(ctx, cfg, conn, listener path, kept auth-master connection or None) -> exit code:
#: a listener that is not a hand-off
OtherListener = Callable[[ServiceContext, Config, socket.socket, str,
                          MasterConnection | None], int]


class _Settings(Protocol):
    @property
    def logout_format(self) -> str: ...


S = TypeVar("S", bound=_Settings)


def prepare_service(config: Config, service: str, settings_of: Callable[[Config], S]
                    ) -> dict[str, Any]:
    """Run by the master before it forks (a service module's ``prepare``): fills the
    per-process caches every session would otherwise fill after its fork -- the config
    view for the protocol, the service's settings (``settings_of``), the parsed ``%``
    templates of the mail settings and logout line -- once, in pages the children share.
    Returns ``ctx.extra`` entries (see ``prepared_settings``)."""
    try:
        cfg = config.lookup(protocol=service)
        settings = settings_of(cfg)
    except (ConfigError, ValueError):
        return {}  # each session reports it, as without this
    values = [str(cfg.get(name) or "") for name in ("mail_log_prefix", "mail_location",
                                                     "mail_home")]
    warm_templates([*values, *map(unquote, values), settings.logout_format])
    return {"mail_config": cfg, "mail_settings": settings}


def prepared_settings(ctx: ServiceContext, kind: type[S]) -> S | None:
    """The settings ``prepare_service`` made in the master (None: read them per session)."""
    value = ctx.extra.get("mail_settings")
    return value if isinstance(value, kind) else None


def warm_templates(templates: Iterable[str]) -> None:
    """Parse ``templates`` into ``cote.variables``' per-process template cache."""
    for template in set(templates) - {""}:
        try:
            cached_template(template)
        except VariableError:
            pass  # each session reports it


def run_service(ctx: ServiceContext, service: str, serve: ServeMail, *, failure_reason: str,
                failure_line: bytes, log_name: str | None = None,
                others: Mapping[str, OtherListener] | None = None) -> int:
    """The master's entry point for a mail service: wait for a client, serve it, and exit
    after ``service_count`` clients (Dovecot's default 1; 0 = no limit). A process that
    serves several becomes the first user for good and only takes further clients with
    the same uid and gid, as Dovecot's do. A connection on a listener whose name ``others``
    holds (e.g. imap's ``imap-master``) goes to that handler instead of a login process's
    hand-off."""
    # (the default signal handlers are in place: the master installed them before run)
    prepared = ctx.extra.get("mail_config")
    cfg = prepared if isinstance(prepared, Config) else ctx.config.lookup(protocol=service)
    listeners = [lst for lst in ctx.listeners if lst.kind == "unix" and lst.sock is not None]
    if not listeners:
        ctx.log.error(f"{service} service has no unix_listener (e.g. login/{service})")
        return 1
    for lst in listeners:
        assert lst.sock is not None
        # Shared with the service's other processes: whoever loses an accept race must get
        # EAGAIN and go back to select (watching the master-death pipe), not block.
        lst.sock.setblocking(False)
    ctx.status.report(ctx.available())
    reuse = ctx.service_count != 1
    auth_path = os.path.join(ctx.base_dir, "auth-master")
    # The auth-master handshake is done while waiting, not while the client waits. A
    # process serving several clients keeps it: once it is the user, auth-master (root's
    # socket) is out of its reach.
    auth_master = connect(auth_path)
    code = 0
    while ctx.accepting:
        if reuse and (auth_master is None or auth_master.closed):
            auth_master = connect(auth_path)
            if auth_master is None and has_become_a_user():
                break  # the auth daemon restarted: a fresh process can reach it
        watched = [*(lst.fd for lst in listeners), ctx.master_death_fd]
        if reuse and auth_master is not None:
            watched.append(auth_master.sock.fileno())  # readable: the daemon hung up
        readable, _, _ = select.select(watched, [], [])
        if ctx.master_death_fd in readable:
            return 0
        if auth_master is not None and not auth_master.closed \
                and auth_master.sock.fileno() in readable:
            auth_master.close()
            continue
        for lst in listeners:
            if lst.fd not in readable:
                continue
            assert lst.sock is not None
            try:
                conn, _ = lst.sock.accept()
            except (BlockingIOError, InterruptedError):
                continue  # another process of the service took it
            conn.setblocking(True)
            ctx.client_connected()
            if not reuse:
                ctx.stop_accepting()
            other = (others or {}).get(os.path.basename(lst.name))
            with conn:
                if other is not None:
                    if auth_master is not None and not reuse:
                        auth_master.close()
                    code = other(ctx, cfg, conn, lst.path,
                                 auth_master if reuse else None)
                else:
                    code = serve_handoff(ctx, cfg, conn, service, serve,
                                         failure_reason=failure_reason,
                                         failure_line=failure_line, auth_master=auth_master,
                                         keep_auth=reuse, log_name=log_name)
            if code == RETIRE:
                ctx.stop_accepting()
                code = 0
            ctx.client_disconnected()
            if reuse:
                ctx.set_title()
            break  # the other listeners' readiness is stale after a session
    return code
