"""The auth service: Dovecot's auth sockets on asyncio, in front of :mod:`cote.auth.engine`.

``run(ctx)`` is the master's entry point. Each listener of ``service auth`` speaks the protocol
its name says, as in Dovecot: a name ending in ``master`` is the auth-master socket (REQUEST,
USER, PASS, LIST, CACHE-FLUSH), one ending in ``userdb`` the auth-userdb socket (the same
lookups, but a peer that is neither root nor the socket's owner only gets answers about its
own uid), and every other one (``auth-client``, ``login/login``, Postfix's ``private/auth``)
the auth-client protocol. Many requests run concurrently per connection; each conversation is
a task fed by that connection's CONT lines.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from cote.auth import drivers, workerclient
from cote.auth.engine import AuthEngine, Reply, UserdbAnswer, flush_cache
from cote.auth.penalty import PenaltyClient, checksum
from cote.auth.protocol import auth_client as ac
from cote.auth.protocol import auth_master as am
from cote.auth.request import AuthRequest
from cote.config import Config
from cote.ipc import ServiceContext
from cote.log import Logger

try:
    from uvloop import run as run_loop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux only
    from asyncio import run as run_loop  # type: ignore[assignment]

READ_CHUNK = 65536


def listener_protocol(name: str) -> str:
    base = os.path.basename(name)
    if base.endswith("master"):
        return "master"
    if base.endswith("userdb"):
        return "userdb"
    if "token" in base:
        return "token"
    if base == "login" or base.endswith("-login"):
        return "login"  # login processes' socket: their logins wait for a mail process's REQUEST
    return "client"


def peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class ClientConnection:
    """One auth-client connection (a login process, Postfix, Exim)."""

    def __init__(self, engine: AuthEngine, writer: asyncio.StreamWriter, log: Logger,
                 penalty: PenaltyClient, *, login_requests: bool = True) -> None:
        self.engine = engine
        self.writer = writer
        # As Dovecot: only logins made on a login socket are kept for auth-master REQUEST;
        # Postfix's and other clients' successes are forgotten at once.
        self.login_requests = login_requests
        self.log = log
        self.penalty = penalty
        self.codec = ac.ServerConnection([m.name for m in engine.mechanisms])
        self.cuid = engine.new_cuid()
        self.client_pid = 0
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.responses: dict[int, asyncio.Queue[bytes]] = {}
        self.out: list[bytes] = []
        self.debug_buf = b""  # auth_debug: input lines, for "client in:"

    def _write(self, data: bytes) -> None:
        """Replies made in one loop iteration leave in one write: 16 pipelined AUTHs cost one
        send() instead of 16 (the write per reply was 30% of the auth process's time)."""
        if not self.out:
            asyncio.get_running_loop().call_soon(self._flush)
        self.out.append(data)
        if self.engine.debug:
            self.engine.debug_line(None, "", "client passdb out: " + data.decode(
                "utf-8", "replace").rstrip("\n"))

    def _flush(self) -> None:
        data = b"".join(self.out)
        self.out.clear()
        if not self.writer.is_closing():
            self.writer.write(data)

    def start(self) -> None:
        self.engine.debug_line(None, "", "auth client connected (pid=0)")
        self.writer.write(ac.ServerConnection.handshake(
            self.engine.mechanisms, spid=os.getpid(), cuid=self.cuid,
            cookie=self.engine.cookie))

    def feed(self, data: bytes) -> bool:
        """False when the connection must be closed."""
        if self.engine.debug:
            self._debug_input(data)
        for event in self.codec.feed(data):
            if isinstance(event, ac.ClientPid):
                self.client_pid = event.pid
            elif isinstance(event, ac.AuthBegin):
                self._begin(event)
            elif isinstance(event, ac.AuthContinue):
                queue = self.responses.get(event.id)
                if queue is not None:
                    queue.put_nowait(event.response)
            elif isinstance(event, ac.AuthCancel):
                self._end(event.id, cancel=True)
            elif isinstance(event, ac.Reply):
                self._write(event.data)
            elif isinstance(event, ac.Disconnect):
                self.log.error(f"auth client {self.client_pid}: {event.reason}")
                return False
        return True

    def _debug_input(self, data: bytes) -> None:
        """auth_debug's "client in:" lines, the client's responses hidden unless
        auth_debug_passwords (then with Dovecot's warning)."""
        *lines, self.debug_buf = (self.debug_buf + data).split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            if line.startswith("CONT\t") and not self.engine.debug_passwords:
                line = "CONT<hidden>"
            elif line.startswith(("AUTH\t", "CONT\t")):
                fields = line.split("\t")
                for i, f in enumerate(fields):
                    if f.startswith("resp=") and not self.engine.debug_passwords:
                        fields[i] = "resp=<hidden>"
                    elif (f.startswith("resp=") or (i == 2 and fields[0] == "CONT")) and f:
                        fields[i] = f + " (previous base64 data may contain sensitive data)"
                line = "\t".join(fields)
            else:
                continue
            self.engine.debug_line(None, "", "client in: " + line)

    def _begin(self, event: ac.AuthBegin) -> None:
        p = event.params
        request = AuthRequest("", service=event.service, local_ip=p.get("lip", ""),
                              remote_ip=p.get("rip", ""), local_port=p.get("lport", ""),
                              remote_port=p.get("rport", ""), session=p.get("session", ""),
                              secured=event.secured,
                              valid_client_cert="valid-client-cert" in event.flags,
                              cert_username=p.get("cert_username"))
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.responses[event.id] = queue
        self.tasks[event.id] = asyncio.get_running_loop().create_task(
            self._converse(event, request, queue.get))

    async def _converse(self, event: ac.AuthBegin, request: AuthRequest,
                        responses: Callable[[], Awaitable[bytes]]) -> None:
        penalised = bool(request.remote_ip) and "no-penalty" not in event.flags
        try:
            if penalised:
                wait = await self.penalty.delay(request.remote_ip)
                if wait > 0:
                    await asyncio.sleep(wait)
            async for reply in self.engine.conversation(
                    event.mechanism, event.initial_response, request,
                    final_resp_ok="final-resp-ok" in event.flags, cuid=self.cuid,
                    responses=responses):
                if penalised and reply.kind != "cont" and reply.code != "temp_fail":
                    # before the answer, as Dovecot: a client that retries at once must
                    # already meet the penalty
                    await self.penalty.record(
                        request.remote_ip, failed=reply.kind == "fail",
                        check=checksum(request.user, event.initial_response or b""))
                self._send(event.id, reply, request)
        except Exception as e:  # a bug must fail this request, not the daemon
            self.log.error(f"auth request {event.id} failed: {type(e).__name__}: {e}")
            self._write(self.codec.fail(event.id, code="temp_fail"))
        finally:
            self._end(event.id, cancel=False)

    def _send(self, request_id: int, reply: Reply, request: AuthRequest) -> None:
        if reply.kind == "cont":
            self._write(self.codec.cont(request_id, reply.challenge))
        elif reply.kind == "ok":
            self.engine.debug_line(request, "auth", "Auth request finished")
            if self.client_pid and self.login_requests:
                self.engine.remember_login(self.client_pid, request_id, request)
            self._write(self.codec.ok(request_id, reply.user, reply.fields))
        else:
            self.engine.debug_line(request, "auth", "Auth request finished")
            self._write(self.codec.fail(request_id, user=reply.user or None,
                                              code=reply.code, reason=reply.reason,
                                              fields=reply.fields))

    def _end(self, request_id: int, *, cancel: bool) -> None:
        task = self.tasks.pop(request_id, None)
        self.responses.pop(request_id, None)
        if cancel and task is not None:
            task.cancel()

    def close(self) -> None:
        if self.out:
            self._flush()  # what was answered before the connection ends still goes out
        for task in self.tasks.values():
            task.cancel()
        self.tasks.clear()


class MasterConnection:
    """One auth-master or auth-userdb connection (mail processes, LMTP, LDA, coteadm)."""

    def __init__(self, engine: AuthEngine, writer: asyncio.StreamWriter, log: Logger,
                 restricted_uid: int | None) -> None:
        self.engine = engine
        self.writer = writer
        self.log = log
        self.restricted_uid = restricted_uid  # auth-userdb peers that are not root/owner
        self.codec = am.ServerConnection()
        self.master = restricted_uid is None
        self.debug_buf = b""

    def start(self) -> None:
        self.writer.write(am.ServerConnection.handshake(os.getpid()))

    def feed(self, data: bytes) -> bool:
        if self.engine.debug:
            *lines, self.debug_buf = (self.debug_buf + data).split(b"\n")
            for line in lines:
                if not line.startswith((b"VERSION\t", b"CPID\t")):
                    self.engine.debug_line(None, "", "master in: " + line.decode(
                        "utf-8", "replace"))
        for event in self.codec.feed(data):
            if isinstance(event, am.Disconnect):
                self.log.error(f"auth-master client: {event.reason}")
                return False
            if isinstance(event, am.MasterVersion):
                continue
            asyncio.get_running_loop().create_task(self._handle(event))
        return True

    async def _handle(self, event: am.ServerEvent) -> None:
        try:
            await self._answer(event)
        except Exception as e:  # never take the daemon down for one lookup
            request_id = getattr(event, "id", 0)
            self.log.error(f"auth-master request {request_id}: {type(e).__name__}: {e}")
            self.writer.write(am.ServerConnection.fail(request_id, "Internal error"))

    async def _answer(self, event: am.ServerEvent) -> None:
        if isinstance(event, am.LoginRequest):
            if not self.master:
                self.writer.write(am.ServerConnection.fail(event.id, "REQUEST needs the "
                                                                     "auth-master socket"))
                return
            request = self.engine.take_login(event.client_pid, event.client_id, event.cookie)
            if request is None:
                self.log.error(f"Master requested auth for nonexistent client "
                               f"{event.client_pid}")
                self.writer.write(am.ServerConnection.notfound(event.id))
                return
            await self._user_reply(event.id, request, login=True)
        elif isinstance(event, am.UserLookup):
            name = self.engine.normalize(event.user)
            if name is None:
                self.writer.write(am.ServerConnection.notfound(event.id))
                return
            p = event.params
            request = AuthRequest(name, original_user=event.user, service=p.get("service", ""),
                                  local_ip=p.get("lip", ""), remote_ip=p.get("rip", ""))
            await self._user_reply(event.id, request)
        elif isinstance(event, am.PassLookup):
            if not self.master:
                self.writer.write(am.ServerConnection.fail(event.id, "Permission denied"))
                return
            name = self.engine.normalize(event.user) or event.user
            request = AuthRequest(name, original_user=event.user,
                                  service=event.params.get("service", ""))
            answer, fields = await self.engine.passdb(request)
            if answer == UserdbAnswer.FOUND:
                self.writer.write(am.ServerConnection.passdb(event.id, name, fields))
            elif answer == UserdbAnswer.NOTFOUND:
                self.writer.write(am.ServerConnection.notfound(event.id))
            else:
                self.writer.write(am.ServerConnection.fail(event.id))
        elif isinstance(event, am.ListUsers):
            async for name in self.engine.list_users(event.params.get("user", "*")):
                self.writer.write(am.ServerConnection.list_user(event.id, name))
            self.writer.write(am.ServerConnection.list_done(event.id))
        elif isinstance(event, am.CacheFlush):
            self.writer.write(am.ServerConnection.cache_flushed(
                event.id, flush_cache(self.engine, event.users)))

    async def _user_reply(self, request_id: int, request: AuthRequest, *,
                          login: bool = False) -> None:
        answer, fields, _log = await self.engine.userdb(request)
        if login and request.master_user:
            fields = {**fields, "master_user": request.master_user}
        if login and request.mechanism:
            fields = {**fields, "auth_mech": request.mechanism}  # as Dovecot's REQUEST reply
        if login and request.master_user:
            fields = {**fields, "auth_user": request.master_user}
        if answer == UserdbAnswer.NOTFOUND:
            self._userdb_out(am.ServerConnection.notfound(request_id))
        elif answer == UserdbAnswer.FAIL:  # the userdb's error is logged by the engine
            self._userdb_out(am.ServerConnection.fail(request_id))
        elif self.restricted_uid is not None and fields.get("uid") != str(self.restricted_uid):
            self.log.warning(f"userdb({request.user}): client doesn't have lookup "
                             f"permissions for this user: userdb reply doesn't contain "
                             f"uid={self.restricted_uid}")
            self._userdb_out(am.ServerConnection.fail(request_id, "Permission denied"))
        else:
            self._userdb_out(am.ServerConnection.user(request_id, request.user, fields))


    def _userdb_out(self, data: bytes) -> None:
        self.writer.write(data)
        self.engine.debug_line(None, "", "userdb out: " + data.decode(
            "utf-8", "replace").rstrip("\n"))

async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 engine: AuthEngine, log: Logger, *, protocol: str, owner_uid: int,
                 penalty: PenaltyClient) -> None:
    conn: ClientConnection | MasterConnection
    if protocol in ("client", "login"):
        conn = ClientConnection(engine, writer, log, penalty, login_requests=protocol == "login")
    else:
        uid = peer_uid(writer)
        restricted = None if protocol == "master" or uid in (None, 0, owner_uid) else uid
        conn = MasterConnection(engine, writer, log, restricted)
        if protocol == "master":
            conn.master = True
    conn.start()
    try:
        while True:
            data = await reader.read(READ_CHUNK)
            if not data or not conn.feed(data):
                break
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        if isinstance(conn, ClientConnection):
            conn.close()
        writer.close()


M_ARENA_MAX = -8  # glibc mallopt parameter


def thread_pool() -> ThreadPoolExecutor:
    """Threads for the blocking steps (crypt hashes, getpwnam, OAuth2 HTTP) that fit the
    service's vsz_limit (RLIMIT_AS, 256 MB by default): small stacks, one per CPU, few malloc
    arenas (glibc reserves 64 MB of address space for each thread's arena: a burst of hashed
    logins failed with "can't start new thread" before)."""
    threading.stack_size(512 * 1024)
    try:
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, 2)
    except (OSError, AttributeError):
        pass
    return ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2),
                              thread_name_prefix="auth")


async def serve(ctx: ServiceContext) -> None:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(thread_pool())
    ctx.install_asyncio_handlers(loop)
    log = ctx.log
    workerclient.configure(ctx.base_dir, int(ctx.config.get("auth_worker_max_count")))
    engine = AuthEngine(ctx.config, log)
    penalty = PenaltyClient(ctx.anvil)
    servers: list[asyncio.AbstractServer] = []
    for lst in ctx.listeners:
        protocol = listener_protocol(lst.name)
        if lst.sock is None or protocol == "token":
            continue
        # auth-userdb is created for the auth service's own user: that is "the socket's owner"
        # whose peers may look up anyone.
        owner = os.getuid()

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         protocol: str = protocol, owner: int = owner) -> None:
            # Counted, so the master's idle_kill never stops an auth process that has clients
            # (it did: every client's connection closed at once, a minute after start).
            ctx.client_connected()
            try:
                await handle(reader, writer, engine, log, protocol=protocol, owner_uid=owner,
                             penalty=penalty)
            finally:
                ctx.client_disconnected()

        if lst.kind == "unix":
            servers.append(await asyncio.start_unix_server(client, sock=lst.sock))
        else:
            servers.append(await asyncio.start_server(client, sock=lst.sock))
    done = asyncio.Event()
    ctx.on_stop_accepting(done.set)
    ctx.status.report(ctx.available())
    await done.wait()
    for s in servers:
        s.close()


def prepare(config: Config) -> dict[str, object]:
    """Before the master forks this service: import the passdb/userdb drivers the config
    names (see ``cote.auth.drivers.preload``)."""
    drivers.preload(config)
    return {}


def run(ctx: ServiceContext) -> int:
    # uvloop (a cote dependency on Linux) where installed: its transports cut the cost of
    # writing each reply, the largest single item in the auth process's profile
    run_loop(serve(ctx))
    return 0
