"""The login server: runs a pre-auth dialogue per client connection, on one asyncio loop.

Protocol-independent: a *frontend* (POP3 now; IMAP and ManageSieve plug in the same way) turns
client bytes into :mod:`cote.login.actions`; this module carries them out — TLS (implicit and
STARTTLS), SASL through the auth daemon, the hand-off of the client socket to a mail process,
and Dovecot's log lines. Written on ``asyncio.Protocol`` with an explicit buffer, because bytes
a client pipelined after its login command must travel with the socket to the mail process.

With TLS the login process cannot hand over the socket (the TLS state lives here), so it hands
over one end of a socketpair and relays plaintext between it and the client for the session.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import ipaddress
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from cote.auth.protocol.auth_client import Continue, Failure, MechanismInfo, Success
from cote.config import Config
from cote.handoff import HandoffError, HandoffReply, HandoffRequest
from cote.log import Logger, LoginLogFormatter
from cote.login.actions import (
    Action,
    AuthCancel,
    AuthContinue,
    Authenticate,
    Disconnect,
    Reply,
    StartTls,
)
from cote.login.anvilclient import AnvilClient, AnvilUnavailable, ident
from cote.login.authclient import AuthClient, AuthRequest, AuthUnavailable
from cote.login.forward import Forwarded
from cote.login.haproxy import ProxyHeader
from cote.login.haproxy_accept import HeaderReader
from cote.login.managesieve_proxy import ManageSieveBackendLogin
from cote.login.proxy import (
    ClientFacts,
    DisconnectSpreader,
    ImapBackendLogin,
    Pop3BackendLogin,
    ProxyTarget,
    plaintext_password,
    proxy_target,
)
from cote.login.proxy_session import BackendFailure, ProxyNotify, backend_login
from cote.login.tlsconfig import ClientCert, client_certificate, sni_name

HANDOFF_TIMEOUT = 30.0
# A mail process that already serves another uid (service_count != 1) answers "retry"
# without touching the login: the hand-off goes to the service again, and each process that
# said so has stopped taking clients, so another one (a fresh one at worst) takes it.
HANDOFF_ATTEMPTS = 4
CLOSE_GRACE = 1.0  # seconds a closed connection may take to flush before it is aborted
RELAY_CHUNK = 65536
PROXY_FAILURE = "Account is temporarily unavailable."  # any proxying error, as Dovecot says


@dataclass(frozen=True, slots=True)
class ConnectionFacts:
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    session: str
    tls: bool
    secured: bool  # TLS, a trusted network, or local IP == remote IP (Dovecot's rule)
    trusted: bool = False  # from login_trusted_networks: may forward the client's facts


class Frontend(Protocol):
    """A protocol's pre-auth dialogue behind the server (see login/pop3.py)."""

    @property
    def user(self) -> str | None:
        """The last user name tried, for log lines."""

    @property
    def mechanism(self) -> str | None: ...

    def greeting(self) -> bytes: ...

    def feed(self, data: bytes) -> list[Action]:
        """Process input; stops after an action that needs the server (auth, TLS, close)."""

    def resume(self) -> list[Action]:
        """Continue with input that was buffered while the server was busy."""

    def take_buffered(self) -> bytes: ...

    def discard_buffered(self) -> None: ...

    def challenge(self, data: bytes) -> list[Action]: ...

    def failed(self, reason: str | None, *, temporary: bool) -> list[Action]: ...

    def succeeded(self) -> None: ...

    def tls_started(self) -> None: ...

    def handoff_extra(self) -> dict[str, str]:
        """Protocol facts the mail process needs (IMAP: the login command's tag)."""

    def refused(self, reason: str) -> list[Action]:
        """Auth OK but ``nologin``: refuse with the passdb's reason."""

    def referral(self, user: str, host: str, port: int | None, reason: str | None
                 ) -> list[Action]:
        """Auth OK with ``nologin`` and ``host``: point the client at that server."""

    def proxy_failed(self, reply: bytes) -> list[Action]:
        """The proxy backend refused the login: ``reply`` is its answer, for the client."""

    def take_forwarded(self) -> Forwarded | None:
        """Client facts a trusted proxy forwarded (ID x-* fields, XCLIENT) since last asked."""

    def refusal(self, text: str) -> bytes:
        """The answer to the login command when a connection limit refuses it."""

    def goodbye(self, text: str) -> bytes:
        """What the client sees when the server drops it (``Connection queue full``)."""


FrontendFactory = Callable[[ConnectionFacts, tuple[MechanismInfo, ...]], Frontend]


@dataclass
class LoginServerSettings:
    protocol: str  # "pop3", "imap": the auth service name and the mail socket's name
    auth_socket: str
    mail_socket: str
    tls: ssl.SSLContext | None
    trusted_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    formatter: LoginLogFormatter
    log: Logger
    on_client_count: Callable[[int], None] = field(default=lambda n: None)
    haproxy_trusted_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = \
        field(default_factory=list)
    haproxy_timeout: float = 3.0
    anvil: AnvilClient | None = None
    max_userip_connections: int = 0  # mail_max_userip_connections (0: unlimited)
    login_proxy_max_disconnect_delay: float = 0.0
    client_cert_field: str | None = None  # ssl_verify_client_cert: the cert_username field
    require_client_cert: bool = False  # auth_ssl_require_client_cert (for disconnect lines)
    proxy_notify: ProxyNotify | None = None  # proxy_refresh's fifo (login/proxy-notify)


def networks(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n, strict=False) for n in text.replace(",", " ").split()]


def trusted_networks(cfg: Config) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return networks(str(cfg.get("login_trusted_networks")))


def new_session_id() -> str:
    """16 base64 characters, the shape of Dovecot's ``session=<…>`` ids."""
    stamp = int(time.time() * 1_000_000) & 0xFFFFFFFFFFFF
    return base64.b64encode(stamp.to_bytes(6, "big") + os.urandom(6)).decode("ascii")


def _is_trusted(ip: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in networks)


async def _send_fd(sock: socket.socket, data: bytes, fd: int) -> None:
    """sendmsg with the descriptor on a non-blocking socket: one message on a new
    connection fits at once; if it does not, wait until the socket is writable (a thread
    for this cost a thread start per login)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            sent = socket.send_fds(sock, [data], [fd])
        except BlockingIOError:
            sent = 0
        if sent:
            if sent < len(data):
                await loop.sock_sendall(sock, data[sent:])
            return
        writable = loop.create_future()
        loop.add_writer(sock.fileno(), writable.set_result, None)
        try:
            await writable
        finally:
            loop.remove_writer(sock.fileno())


class LoginServer:
    def __init__(self, settings: LoginServerSettings, frontend: FrontendFactory) -> None:
        self.settings = settings
        self.frontend = frontend
        self.auth = AuthClient(settings.auth_socket, settings.protocol)
        self.connections: set[LoginConnection] = set()
        self.accepting = 0  # accepted sockets whose connection is not made yet
        self.listening: list[socket.socket] = []
        self.sources: list[tuple[socket.socket, bool, bool]] = []
        self.may_accept: Callable[[], bool] = lambda: True
        self.disconnects = DisconnectSpreader(settings.login_proxy_max_disconnect_delay)
        self._preconnect: asyncio.Task[None] | None = None

    def serve(self, listeners: list[tuple[socket.socket, bool, bool]],
              may_accept: Callable[[], bool]) -> None:
        """Accept on each (listening socket, implicit TLS, haproxy) while ``may_accept()``.

        One accept per readiness event, the client counted the moment it is accepted: a
        login process takes exactly the clients its limits allow (one in high-security
        mode) and never leaves with a socket it accepted but did not serve. (asyncio's own
        servers accept greedily and build the connection later.)"""
        self.may_accept = may_accept
        for sock, implicit_tls, haproxy in listeners:
            if implicit_tls and self.settings.tls is None:
                self.settings.log.error("ssl listener configured but no ssl_cert/ssl_key: "
                                        "not accepting TLS connections")
                continue
            sock.setblocking(False)
            self.sources.append((sock, implicit_tls, haproxy))
        # Connect to auth before the first client (as Dovecot's login processes do): the
        # greeting waits for the auth handshake (it lists the mechanisms), and a process
        # forked ahead as a spare has the time now, not when its client is waiting.
        self._preconnect = asyncio.get_running_loop().create_task(self._connect_auth())
        self.resume_accepting()

    async def _connect_auth(self) -> None:
        try:
            await self.auth.connect()
        except AuthUnavailable:
            pass  # the first client tries again and logs the error

    def resume_accepting(self) -> None:
        """Watch the listeners again (after a client left a full process)."""
        if self.listening or not self.may_accept():
            return
        loop = asyncio.get_running_loop()
        for sock, implicit_tls, haproxy in self.sources:
            loop.add_reader(sock.fileno(), self._accept, sock, implicit_tls, haproxy)
            self.listening.append(sock)

    def stop_accepting(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self.listening:
            loop.remove_reader(sock.fileno())
        self.listening.clear()

    def drop_oldest_unauthenticated(self) -> None:
        """The master says every process is full: make room, as Dovecot's login does."""
        waiting = [c for c in self.connections if not c.handed_off and not c.busy
                   and c.frontend is not None and c.closing_reason is None]
        if waiting:
            min(waiting, key=lambda c: c.started).drop("Connection queue full")

    def _accept(self, sock: socket.socket, implicit_tls: bool, haproxy: bool) -> None:
        if not self.may_accept():
            self.stop_accepting()
            return
        try:
            conn, _ = sock.accept()
        except (BlockingIOError, InterruptedError):
            return  # another login process took it
        except OSError as e:
            self.settings.log.error(f"accept() failed: {e}")
            return
        conn.setblocking(False)
        if conn.family in (socket.AF_INET, socket.AF_INET6):
            # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and an
            # accepted one has proto 0: without it, a write after an unacknowledged one (the
            # greeting after TLS 1.3's session tickets, relayed replies) waited for the
            # client's delayed ACK, ~40 ms. The option stays with the fd after the hand-off.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.accepting += 1
        self.settings.on_client_count(self.client_count())
        if haproxy:
            self._read_proxy_header(conn, implicit_tls)
        else:
            self._connect(conn, implicit_tls, None)

    def _connect(self, conn: socket.socket, implicit_tls: bool,
                 header: ProxyHeader | None) -> None:
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.connect_accepted_socket(
            lambda: LoginConnection(self, implicit_tls, header), conn))
        task.add_done_callback(self._accepted)

    def _read_proxy_header(self, conn: socket.socket, implicit_tls: bool) -> None:
        """haproxy = yes: only trusted load balancers, and the header before anything else."""
        try:
            rip = str(conn.getpeername()[0])
        except OSError:
            rip = ""
        if not _is_trusted(rip, self.settings.haproxy_trusted_networks):
            self.settings.log.warning(f"haproxy: Client not trusted (rip={rip})")
            conn.close()
            self._not_connected()
            return

        def done(header: ProxyHeader | None) -> None:
            if header is None:
                self._not_connected()
            else:
                self._connect(conn, implicit_tls, header)

        HeaderReader(conn, rip, self.settings.haproxy_timeout, self.settings.log, done)

    def _not_connected(self) -> None:
        self.accepting -= 1
        self.settings.on_client_count(self.client_count())

    def _accepted(self, task: asyncio.Task[tuple[asyncio.Transport, asyncio.BaseProtocol]]
                  ) -> None:
        if task.cancelled() or task.exception() is not None:
            self._not_connected()  # no LoginConnection was made for it

    def client_count(self) -> int:
        return len(self.connections) + self.accepting

    def added(self, conn: LoginConnection) -> None:
        # Already counted when accepted: connection_made runs before the accept task ends.
        self.connections.add(conn)
        self.accepting -= 1

    def removed(self, conn: LoginConnection) -> None:
        self.connections.discard(conn)
        self.settings.on_client_count(self.client_count())


class LoginConnection(asyncio.Protocol):
    def __init__(self, server: LoginServer, implicit_tls: bool,
                 proxy_header: ProxyHeader | None = None) -> None:
        self.server = server
        self.settings = server.settings
        self.implicit_tls = implicit_tls
        self.proxy_header = proxy_header  # what the load balancer said (haproxy = yes)
        self.transport: asyncio.Transport | None = None
        self.frontend: Frontend | None = None
        self.facts: ConnectionFacts | None = None
        self.started = time.monotonic()
        self.auth_attempts = 0
        self.auth_failed = False
        self.auth_task: asyncio.Task[None] | None = None
        self.auth_request: AuthRequest | None = None
        self.busy = False  # auth or hand-off in progress: input waits in the frontend
        self.handed_off = False
        self.closing_reason: str | None = None
        self.closing_bare = False  # log the reason without the "(auth …)" detail
        self.auth_user: str | None = None  # the user auth said OK for
        self.early = b""  # input that arrived before the greeting or while busy
        self.auth_successes = 0
        self.proxy_auth_failed = False
        self.sasl_responses: list[bytes] = []  # the client's, for a proxy's password
        self.bytes_in = 0
        self.bytes_out = 0
        self.last_activity = self.started
        self.client_cert: ClientCert | None = None  # after TLS with ssl_verify_client_cert
        self.local_name: str | None = None  # the SNI name the client asked for

    # -- asyncio callbacks -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        local, remote = transport.get_extra_info("sockname"), transport.get_extra_info("peername")
        lip, lport = (local[0], local[1]) if isinstance(local, tuple) else ("", 0)
        rip, rport = (remote[0], remote[1]) if isinstance(remote, tuple) else ("", 0)
        self.server.added(self)
        header = self.proxy_header
        if header is not None:
            # Behind a load balancer: the header's addresses are the client's. Equal addresses
            # say nothing then (Dovecot's rule): only TLS or a trusted network secure it.
            if header.proxied:
                lip, lport, rip, rport = (header.local_ip, header.local_port, header.remote_ip,
                                          header.remote_port)
            trusted = _is_trusted(rip, self.settings.trusted_networks)
            self._begin(ConnectionFacts(lip, lport, rip, rport, new_session_id(),
                                        self.implicit_tls,
                                        self.implicit_tls or header.ssl or trusted, trusted))
            return
        trusted = _is_trusted(rip, self.settings.trusted_networks)
        secured = (self.implicit_tls or (rip != "" and rip == lip) or trusted
                   or (sock is not None and sock.family == socket.AF_UNIX))
        self._begin(ConnectionFacts(lip, lport, rip, rport, new_session_id(),
                                    self.implicit_tls, secured, trusted))

    def _begin(self, facts: ConnectionFacts) -> None:
        self.facts = facts
        asyncio.get_running_loop().create_task(self._start())

    async def _start(self) -> None:
        assert self.facts is not None
        if self.implicit_tls and not await self._handshake():
            return
        try:
            handshake = await self.server.auth.connect()
            mechanisms = handshake.mechanisms
        except AuthUnavailable as e:
            self.settings.log.error(f"auth: {e}")
            mechanisms = ()
        self.frontend = self.server.frontend(self.facts, mechanisms)
        self._write(self.frontend.greeting())
        self._perform(self.frontend.resume())

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self.last_activity = time.monotonic()
        if self.frontend is None or self.busy:
            # Before the greeting or while auth/hand-off runs: keep the bytes for later.
            self.early += data
            return
        self._perform(self.frontend.feed(data))

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.removed(self)
        if self.auth_task is not None and not self.handed_off:
            self.auth_task.cancel()
        if self.auth_request is not None:
            self.auth_request.cancel()
        if not self.handed_off:
            self._log_disconnect(self.closing_reason or "Connection closed")

    # -- carrying out the frontend's actions ----------------------------------------------------
    def _perform(self, actions: list[Action]) -> None:
        if self.early and self.frontend is not None and not self.busy:
            early, self.early = self.early, b""
            actions = actions + self.frontend.feed(early)
        for action in actions:
            if isinstance(action, Reply):
                self._write(action.data)
            elif isinstance(action, Authenticate):
                self.busy = True
                self.auth_attempts += 1
                self.sasl_responses = [] if action.initial_response is None \
                    else [action.initial_response]
                self.auth_task = asyncio.get_running_loop().create_task(self._authenticate(action))
            elif isinstance(action, AuthContinue):
                if self.auth_request is not None:
                    self.sasl_responses.append(action.response)
                    self.busy = True  # the daemon has the client's response now
                    self.auth_request.respond(action.response)
            elif isinstance(action, AuthCancel):
                self._cancel_auth()
            elif isinstance(action, StartTls):
                self.busy = True
                asyncio.get_running_loop().create_task(self._start_tls())
            elif isinstance(action, Disconnect):
                self.closing_reason = action.reason
                if self.transport is not None:
                    self.transport.close()
        if self.frontend is not None and self.facts is not None:
            forwarded = self.frontend.take_forwarded()
            if forwarded is not None:
                self._apply_forwarded(forwarded)

    def _apply_forwarded(self, f: Forwarded) -> None:
        """A trusted proxy named the real client: auth and log lines use its facts."""
        facts = self.facts
        assert facts is not None
        self.facts = dataclasses.replace(
            facts, remote_ip=f.remote_ip or facts.remote_ip,
            remote_port=f.remote_port or facts.remote_port,
            local_ip=f.local_ip or facts.local_ip, local_port=f.local_port or facts.local_port,
            session=f.session or facts.session)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.bytes_out += len(data)
            self.transport.write(data)

    def _cancel_auth(self) -> None:
        if self.auth_request is not None:
            self.auth_request.cancel()
            self.auth_request = None
        if self.auth_task is not None:
            self.auth_task.cancel()
            self.auth_task = None
        self.busy = False

    async def _handshake(self) -> bool:
        """TLS server handshake on the current transport (implicit TLS or after STARTTLS)."""
        assert self.transport is not None and self.facts is not None
        if self.settings.tls is None:
            self.transport.close()
            return False
        loop = asyncio.get_running_loop()
        try:
            new = await loop.start_tls(self.transport, self, self.settings.tls, server_side=True)
        except (ssl.SSLError, OSError, ConnectionError) as e:
            self.closing_reason = f"Connection closed: TLS handshaking failed: {e}" if str(e) \
                else "Connection closed"
            self.transport.close()
            return False
        if new is None:
            return False
        self.transport = new
        self.facts = dataclasses.replace(self.facts, tls=True, secured=True)
        ssl_object = new.get_extra_info("ssl_object")
        self.local_name = sni_name(ssl_object)
        field = self.settings.client_cert_field
        if field is not None and isinstance(ssl_object, ssl.SSLObject):
            self.client_cert = client_certificate(ssl_object, field)
        return True

    async def _start_tls(self) -> None:
        assert self.frontend is not None
        # Plaintext sent after STARTTLS but before the handshake is an injection attempt.
        self.frontend.discard_buffered()
        self.early = b""
        if not await self._handshake():
            return
        self.frontend.tls_started()
        self.busy = False
        self._perform(self.frontend.resume())  # ManageSieve re-sends its capabilities

    # -- authentication -------------------------------------------------------------------------
    async def _authenticate(self, action: Authenticate) -> None:
        assert self.frontend is not None and self.facts is not None
        facts = self.facts
        params = {"lip": facts.local_ip, "rip": facts.remote_ip, "lport": str(facts.local_port),
                  "rport": str(facts.remote_port), "session": facts.session}
        flags = ["secured"] if facts.secured else []
        if facts.tls:
            params["ssl_cipher"] = "TLS"
        cert = self.client_cert
        if cert is not None and cert.valid:  # Dovecot's request fields for EXTERNAL
            flags.append("valid-client-cert")
            if cert.username is not None:
                params["cert_username"] = cert.username
        if self.local_name:
            params["local_name"] = self.local_name
        try:
            request = await self.server.auth.start(action.mechanism, params=params, flags=flags,
                                                   initial_response=action.initial_response)
        except AuthUnavailable as e:
            self.settings.log.error(f"auth: {e}")
            self._auth_done(self.frontend.failed("Temporary authentication failure.",
                                                 temporary=True))
            return
        self.auth_request = request
        while True:
            reply = await request.next()
            if isinstance(reply, Continue):
                # The client must be heard now: its next line answers the challenge.
                self.busy = False
                self._perform(self.frontend.challenge(reply.challenge))
                continue
            self.auth_request = None
            if isinstance(reply, Success):
                await self._logged_in(request, reply)
                return
            assert isinstance(reply, Failure)
            self.auth_failed = True
            temporary = reply.code == "temp_fail"
            reason = reply.reason if (temporary or "reason" in reply.fields) else None
            if temporary and reply.fields.get("lost"):
                self.settings.log.error(f"auth: {reply.reason}")
                reason = None
            self._auth_done(self.frontend.failed(reason, temporary=temporary))
            return

    def _auth_done(self, actions: list[Action]) -> None:
        self.busy = False
        self.auth_task = None
        self._perform(actions)
        if self.frontend is not None:
            self._perform(self.frontend.resume())

    async def _logged_in(self, request: AuthRequest, success: Success) -> None:
        """Auth said OK: refuse (nologin), proxy, or hand the client to a mail process."""
        assert self.frontend is not None and self.facts is not None
        self.auth_successes += 1
        self.auth_user = success.user
        fields = success.fields
        proxying = "proxy" in fields or "proxy_maybe" in fields
        if "nologin" in fields and not proxying:
            reason = fields.get("reason") or None
            host = fields.get("host", "")
            if host:
                port = fields.get("port", "")
                self._auth_done(self.frontend.referral(
                    fields.get("destuser") or success.user, host,
                    int(port) if port.isdigit() else None, reason))
            else:
                self._auth_done(self.frontend.refused(reason or "Login disabled for this user"))
            return
        try:
            target = proxy_target(fields, protocol=self.settings.protocol, user=success.user,
                                  password=plaintext_password(self.frontend.mechanism or "",
                                                              self.sasl_responses))
        except ValueError as e:
            self.settings.log.error(self._log_line(f"proxy({success.user}): {e}", success.user))
            self._auth_done(self.frontend.failed(PROXY_FAILURE, temporary=True))
            return
        self.sasl_responses = []
        ourself = target is not None and target.maybe and target.is_ourself(
            self.facts.local_ip, self.facts.local_port)
        if target is not None and ourself and target.always:
            # proxy_always: "self" is this cluster and a director would name the backend;
            # Dovecot's auth drops the host then, and the login cannot proxy.
            self.settings.log.error(self._log_line(f"proxy({success.user}): host not given",
                                                   success.user))
            self._auth_done(self.frontend.failed(PROXY_FAILURE, temporary=True))
            return
        if target is not None and not ourself:
            await self._proxy(success.user, target)
            return
        if await self._too_many_connections(success.user):
            return
        await self._hand_off(request, success)

    async def _too_many_connections(self, user: str) -> bool:
        """mail_max_userip_connections, counted by anvil across processes."""
        limit, anvil = self.settings.max_userip_connections, self.settings.anvil
        if limit <= 0 or anvil is None or self.facts is None or self.frontend is None:
            return False
        try:
            count = await anvil.lookup(ident(self.settings.protocol, self.facts.remote_ip, user))
        except AnvilUnavailable as e:
            self.settings.log.error(f"anvil: {e}")
            return False
        if count < limit:
            return False
        text = (f"Maximum number of connections from user+IP exceeded "
                f"(mail_max_userip_connections={limit})")
        self._write(self.frontend.refusal(text))
        self.closing_reason = text
        self.closing_bare = True
        self.busy = False
        self.auth_task = None
        self._close_soon()
        return True

    def _close_soon(self) -> None:
        """Close after the last write; a TLS peer that never answers close_notify does not
        keep its slot (asyncio would wait for it up to 30 s)."""
        transport = self.transport
        if transport is None:
            return
        transport.close()
        asyncio.get_running_loop().call_later(
            CLOSE_GRACE, lambda: None if transport.is_closing() and self not in
            self.server.connections else transport.abort())

    def drop(self, text: str) -> None:
        """The server needs room: say ``text`` and disconnect (Dovecot's queue-full drop)."""
        if self.frontend is not None:
            self._write(self.frontend.goodbye(text))
        self.closing_reason = text
        self._close_soon()

    # -- proxying to a backend server ------------------------------------------------------------
    async def _proxy(self, user: str, target: ProxyTarget) -> None:
        assert self.frontend is not None and self.facts is not None
        assert self.transport is not None
        facts = self.facts
        client = ClientFacts(facts.remote_ip, facts.remote_port, facts.local_ip,
                             facts.local_port, facts.session)
        dialogue: ImapBackendLogin | Pop3BackendLogin | ManageSieveBackendLogin
        if self.settings.protocol == "imap":
            extra = self.frontend.handoff_extra()
            dialogue = ImapBackendLogin(target, extra.get("imap_tag", ""), client,
                                        capability_sent=bool(extra.get("imap_capability_sent")))
        elif self.settings.protocol == "sieve":
            dialogue = ManageSieveBackendLogin(target, client)
        else:
            dialogue = Pop3BackendLogin(target, client)
        prefix = f"proxy({user},{target.host}:{target.port}): "
        started = time.monotonic()
        result = await backend_login(target, dialogue)
        if isinstance(result, BackendFailure):
            if result.refused:
                self.proxy_auth_failed = True
                self.settings.log.info(self._log_line(prefix + result.log, user))
                self._auth_done(self.frontend.proxy_failed(result.reply))
            else:
                self.settings.log.error(self._log_line(
                    prefix + "Remote server sent invalid input: " + result.log
                    if result.log.startswith("Invalid") else prefix + result.log, user))
                self._auth_done(self.frontend.failed(PROXY_FAILURE, temporary=True))
            return
        if self.transport.is_closing():
            result.writer.close()
            return
        self.handed_off = True
        self.frontend.succeeded()
        pipelined = self.frontend.take_buffered() + self.early
        self.early = b""
        as_user = f" as user {target.user}" if target.user != user else ""
        self.settings.log.info(self._log_line(
            f"{prefix}Started proxying to <{target.host}>{as_user} "
            f"({time.monotonic() - started:.3f} secs)", user))
        self._write(result.reply)
        if pipelined:
            result.writer.write(pipelined)
        backend = (target.host, target.port)
        spreader = self.server.disconnects
        spreader.started(backend)
        notifier = None
        if target.refresh > 0 and self.settings.proxy_notify is not None:
            notifier = asyncio.get_running_loop().create_task(
                self.settings.proxy_notify.every(target.refresh, target.user))
        try:
            by_client = await self._pump(result.reader, result.writer, keep_client=True)
        finally:
            spreader.ended(backend)
            if notifier is not None:
                notifier.cancel()
        idle = int(time.monotonic() - self.last_activity)
        who = "client" if by_client else "server"
        delay = 0.0 if by_client else spreader.delay(backend, time.monotonic())
        later = f" - disconnecting client in {int(delay * 1000)}ms" if delay > 0 else ""
        self.settings.log.info(self._log_line(
            f"{prefix}Disconnected by {who} ({idle}s idle, in={self.bytes_in}, "
            f"out={self.bytes_out}){later}", user))
        if delay > 0:
            await asyncio.sleep(delay)
        self.transport.close()
        self.server.removed(self)

    # -- the hand-off to a mail process ------------------------------------------------------------
    async def _hand_off(self, request: AuthRequest, success: Success) -> None:
        assert self.frontend is not None and self.facts is not None
        assert self.transport is not None
        handshake = self.server.auth.handshake
        facts = self.facts
        if not facts.tls:
            # What the client sends from now on is the mail process's to read (it may answer
            # the login before we hear back from it): leave it in the socket.
            self.transport.pause_reading()
        pipelined = self.frontend.take_buffered() + self.early
        self.early = b""
        message = HandoffRequest(
            auth_pid=handshake.spid if handshake else 0, auth_id=request.id,
            client_pid=os.getpid(), cookie=handshake.cookie.hex() if handshake else "",
            user=success.user, mechanism=self.frontend.mechanism or "",
            local_ip=facts.local_ip, local_port=facts.local_port, remote_ip=facts.remote_ip,
            remote_port=facts.remote_port, session=facts.session, secured=facts.secured,
            tls=facts.tls, pipelined=pipelined, extra=self.frontend.handoff_extra())
        relay_end: socket.socket | None = None
        if facts.tls:
            ours, relay_end = socket.socketpair()
            client_fd = relay_end.fileno()
        else:
            sock = self.transport.get_extra_info("socket")
            client_fd = sock.fileno()
        try:
            for _attempt in range(HANDOFF_ATTEMPTS):
                reply = await self._send_handoff(message, client_fd)
                if not reply.retry:
                    break
        except (OSError, HandoffError, TimeoutError) as e:
            self.settings.log.error(f"Hand-off to {self.settings.mail_socket} failed: {e}")
            reply = HandoffReply(False, reason="Internal login failure")
        finally:
            if relay_end is not None:
                relay_end.close()
        if not reply.ok:
            if not facts.tls:
                self.transport.resume_reading()
            self._auth_done(self.frontend.failed(reply.reason or None, temporary=True))
            return
        self.handed_off = True
        self.frontend.succeeded()
        self.settings.log.info(self._log_line("Login", success.user, str(reply.mail_pid)))
        if facts.tls:
            # The mail process registered the session with anvil; this relay carries it.
            await self._relay(ours)
        else:
            # The mail process owns the client now; drop our descriptor without shutdown.
            self.transport.abort()

    async def _send_handoff(self, message: HandoffRequest, fd: int) -> HandoffReply:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.setblocking(False)
            await asyncio.wait_for(loop.sock_connect(sock, self.settings.mail_socket),
                                   HANDOFF_TIMEOUT)
            await asyncio.wait_for(_send_fd(sock, message.encode(), fd), HANDOFF_TIMEOUT)
            data = b""
            while not data.endswith(b"\n"):
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), HANDOFF_TIMEOUT)
                if not chunk:
                    raise HandoffError("mail process closed the hand-off connection")
                data += chunk
            return HandoffReply.decode(data)

    async def _relay(self, inner: socket.socket) -> None:
        """TLS stays here: move plaintext between the client and the mail process."""
        reader, writer = await asyncio.open_connection(sock=inner)
        await self._pump(reader, writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                    keep_client: bool = False) -> bool:
        """Relay until either side closes; True when the client closed first. With
        ``keep_client`` the caller closes the client (and stops counting it)."""
        assert self.transport is not None
        client = self.transport
        relay = _ClientToMail(client, writer, self)
        client.set_protocol(relay)
        if self.early:  # what the client sent while the hand-off was under way
            writer.write(self.early)
            self.early = b""
        try:
            while True:
                try:
                    data = await reader.read(RELAY_CHUNK)
                except (OSError, ssl.SSLError):
                    break
                if not data:
                    break
                self.bytes_out += len(data)
                self.last_activity = time.monotonic()
                client.write(data)
                await relay.client_writable()
        finally:
            writer.close()
            if not keep_client or relay.client_gone:
                client.close()
            else:
                client.pause_reading()
            if not keep_client:
                # The client transport reports its end to the relay protocol now, not to us.
                self.server.removed(self)
        return relay.client_gone

    # -- log lines --------------------------------------------------------------------------------
    def _values(self, user: str | None, mail_pid: str = "") -> dict[str, str | None]:
        facts = self.facts
        assert facts is not None
        return {
            "user": user or "", "mechanism": (self.frontend.mechanism if self.frontend else "")
            or "", "remote_ip": facts.remote_ip, "local_ip": facts.local_ip,
            "remote_port": str(facts.remote_port), "local_port": str(facts.local_port),
            "mail_pid": mail_pid, "secured": "TLS" if facts.tls else
            ("secured" if facts.secured else ""), "session": facts.session,
            "service": self.settings.protocol, "pid": str(os.getpid()),
        }

    def _log_line(self, message: str, user: str | None, mail_pid: str = "") -> str:
        return self.settings.formatter.format(message, self._values(user, mail_pid))

    def _log_disconnect(self, reason: str) -> None:
        if self.facts is None:
            return
        secs = int(time.monotonic() - self.started)
        if self.closing_bare:
            user = self.auth_user or (self.frontend.user if self.frontend else None)
            self.settings.log.info(self._log_line(f"Disconnected: {reason}", user))
            return
        cert = self.client_cert
        if self.settings.require_client_cert and self.facts.tls and (
                cert is None or not cert.valid):
            detail = "client sent an invalid cert" if cert is not None and cert.presented \
                else "client didn't send a cert"
        elif self.proxy_auth_failed:
            detail = "proxy dest auth failed"
        elif self.auth_successes:
            detail = f"internal failure, {self.auth_successes} successful auths"
        elif self.auth_attempts and self.auth_failed:
            detail = f"auth failed, {self.auth_attempts} attempts in {secs} secs"
        elif self.auth_attempts:
            detail = f"client didn't finish SASL auth, waited {secs} secs"
        else:
            detail = f"no auth attempts in {secs} secs"
        user = self.frontend.user if self.frontend else None
        self.settings.log.info(self._log_line(f"Disconnected: {reason} ({detail})", user))


class _ClientToMail(asyncio.Protocol):
    """After a TLS hand-off: client plaintext goes to the mail process's socket, with
    back-pressure both ways (a slow mail process pauses reading from the client, a slow
    client pauses reading from the mail process)."""

    def __init__(self, client: asyncio.Transport, writer: asyncio.StreamWriter,
                 conn: LoginConnection) -> None:
        self.client = client
        self.writer = writer
        self.conn = conn
        self.client_gone = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._draining = False

    def data_received(self, data: bytes) -> None:
        self.conn.bytes_in += len(data)
        self.conn.last_activity = time.monotonic()
        self.writer.write(data)
        if not self._draining and self.writer.transport.get_write_buffer_size() > RELAY_CHUNK:
            self._draining = True
            self.client.pause_reading()
            asyncio.get_running_loop().create_task(self._drain_to_mail())

    async def _drain_to_mail(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()
        self._draining = False
        if not self.client.is_closing():
            self.client.resume_reading()

    def eof_received(self) -> bool | None:
        self.client_gone = True
        with contextlib.suppress(OSError):
            self.writer.write_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.client_gone = True
        self._writable.set()
        self.writer.close()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    async def client_writable(self) -> None:
        await self._writable.wait()
