"""The lmtp service: Postfix (or any MTA) hands mail over LMTP; cote stores it.

``run(ctx)`` is the master's entry point. Each recipient is resolved through the auth daemon's
userdb (``auth_socket_path``, USER with ``service=lmtp``) when its RCPT arrives, so unknown
users are refused at RCPT time; after the data, each accepted recipient gets its own durable
delivery and its own reply, in RCPT order (RFC 2033).

Userdb lookups and deliveries run on the event loop thread, blocking: a delivery switches the
process's effective uid to the user, and nothing else (a lookup in a thread, another client)
may run as that user meanwhile. Dovecot's default ``client_limit = 1`` for lmtp fits this.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from cote.config import Config
from cote.ipc import ServiceContext
from cote.log import Logger, mail_log_prefix
from cote.mailproc.lmtp.concurrency import DeliveryCounter
from cote.mailproc.lmtp.delivery import (
    Envelope,
    Spool,
    choose_mailbox,
    deliver,
    journal_key,
    log_values,
    over_quota,
    trace_headers,
)
from cote.mailproc.lmtp.paths import Address
from cote.mailproc.lmtp.protocol import (
    CheckRecipient,
    Close,
    DataChunk,
    DataEnd,
    Event,
    LmtpProtocol,
    MailFrom,
    Reply,
    Reset,
    reply,
    saved_reply,
)
from cote.mailproc.lmtp.proxy import (
    Backend,
    BackendError,
    BackendSession,
    ProxyTarget,
    last_line,
    pass_lookup,
    proxy_target,
)
from cote.mailproc.lmtp.userlookup import UserLookups
from cote.mailproc.mailuser import MailUser, MailUserError, resolve
from cote.mailproc.userdb import UserdbError, UserNotFound
from cote.storage import QuotaExceeded, StorageError
from cote.variables import VariableError, compile_template

READ_CHUNK = 65536


def new_session_id() -> str:
    """22 base64 characters, the shape of Dovecot's LMTP session ids."""
    return base64.b64encode(os.urandom(16)).decode("ascii").rstrip("=")


class LmtpSettings:
    def __init__(self, cfg: Config, base_dir: str, anvil: socket.socket | None = None) -> None:
        self.cfg = cfg
        self.concurrency = DeliveryCounter(anvil, int(str(cfg.get("lmtp_user_concurrency_limit"))))
        self.hostname = str(cfg.get("hostname")) or socket.gethostname()
        self.greeting = str(cfg.get("login_greeting"))
        self.delimiter = str(cfg.get("recipient_delimiter"))
        self.userdb_socket = os.path.join(base_dir, str(cfg.get("auth_socket_path")))
        self.lookups = UserLookups(self.userdb_socket)
        self.add_received = bool(cfg.get("lmtp_add_received_header"))
        self.quota_tempfail = bool(cfg.get("quota_full_tempfail"))
        self.log_format = compile_template(str(cfg.get("deliver_log_format")))
        self.detail_mailbox = bool(cfg.get("lmtp_save_to_detail_mailbox"))
        self.rcpt_check_quota = bool(cfg.get("lmtp_rcpt_check_quota"))
        self.hdr_address = str(cfg.get("lmtp_hdr_delivery_address"))  # final|original|none
        self.proxy = bool(cfg.get("lmtp_proxy"))

    def detail(self, address: Address) -> str | None:
        """The +detail of the recipient's local part (for lmtp_save_to_detail_mailbox)."""
        for delim in self.delimiter:
            if delim in address.localpart:
                return address.localpart.split(delim, 1)[1] or None
        return None

    def lookup_name(self, address: Address) -> str:
        """The user to look up: the address without its +detail."""
        local = address.localpart
        for delim in self.delimiter:
            if delim in local:
                local = local.split(delim, 1)[0]
                break
        return local if address.domain is None else f"{local}@{address.domain}"


@dataclass(frozen=True, slots=True)
class Recipient:
    user: MailUser
    detail: str | None  # its +detail, when it names the target mailbox
    original: str | None  # ORCPT's address, if the client sent one


def original_recipient(params: tuple[tuple[str, str | None], ...]) -> str | None:
    """The address of an ``ORCPT=rfc822;addr`` parameter."""
    for key, value in params:
        if key == "ORCPT" and value and value.lower().startswith("rfc822;"):
            return value[7:]
    return None


@dataclass(frozen=True, slots=True)
class ProxiedRecipient:
    target: ProxyTarget
    session: BackendSession
    original: str | None


def param_text(params: tuple[tuple[str, str | None], ...]) -> str:
    """ESMTP parameters as they are written after a path (`` KEY=VALUE``...)."""
    return "".join(f" {k}" if v is None else f" {k}={v}" for k, v in params)


def received_only(head: bytes) -> bytes:
    """The Received header of a trace head (what an LMTP proxy adds in front)."""
    at = head.find(b"Received:")
    return head[at:] if at >= 0 else b""


class LmtpConnection:
    def __init__(self, settings: LmtpSettings, log: Logger, peer: str, local: str,
                 local_port: int = 0) -> None:
        self.settings = settings
        self.log = log
        self.peer = peer
        self.local = local
        self.local_port = local_port
        self.session_id = new_session_id()
        self.proto = LmtpProtocol(settings.hostname, settings.greeting)
        self.spool: Spool | None = None
        self.sender = ""
        self.users: list[Recipient | ProxiedRecipient] = []
        self.counted: list[str] = []  # users registered with anvil for this transaction
        self.mail_from = ""  # the client's MAIL argument, for proxied recipients' backends
        self.backends: dict[Backend, BackendSession] = {}
        self.out: list[bytes] = []
        self.closed = False

    def greeting(self) -> bytes:
        return self.proto.greeting()

    def receive(self, data: bytes) -> bytes:
        self._handle(self.proto.receive_data(data))
        out, self.out = b"".join(self.out), []
        return out

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Reply):
                self.out.append(event.data)
            elif isinstance(event, MailFrom):
                self._new_transaction(event)
            elif isinstance(event, CheckRecipient):
                self._handle(self._check(event))
            elif isinstance(event, DataChunk):
                if self.spool is not None:
                    self.spool.write(event.data)
            elif isinstance(event, DataEnd):
                results = self._deliver_all(event)
                self._end_counted()
                self._end_backends()
                self._handle(self.proto.delivered(results))
            elif isinstance(event, Reset):
                self._end_counted()
                self._end_backends()
            elif isinstance(event, Close):
                self.closed = True

    def _new_transaction(self, event: MailFrom) -> None:
        if self.spool is not None:
            self.spool.close()
        self.spool = Spool()
        self.sender = str(event.sender) if event.sender is not None else ""
        self.mail_from = f"FROM:<{self.sender}>{param_text(event.params)}"
        self.users = []
        self._end_counted()
        self._end_backends()

    def _end_backends(self) -> None:
        for session in self.backends.values():
            session.close()
        self.backends = {}

    def _end_counted(self) -> None:
        for name in self.counted:
            self.settings.concurrency.end(name)
        self.counted = []

    def _check(self, event: CheckRecipient) -> list[Event]:
        address = event.address
        name = self.settings.lookup_name(address)
        params = {"service": "lmtp", "lip": self.local, "rip": self.peer}
        if self.settings.proxy:
            try:
                fields = pass_lookup(self.settings.userdb_socket, name, params)
            except UserdbError as e:
                self.log.error(f"<{address}>: passdb lookup failed: {e}")
                return self.proto.recipient_checked(
                    False, reply(451, "4.3.0", f"<{address}> Temporary internal error"))
            local = (self.local, self.local_port) if self.local_port else None
            target = proxy_target(fields, str(address), local) if fields else None
            if target is not None:
                return self._proxy_rcpt(event, target)
        try:
            found = self.settings.lookups.user(name, params)
            user = resolve(self.settings.cfg, found.user, found.fields, "lmtp",
                           {"session": self.session_id})
        except UserNotFound:
            return self.proto.recipient_checked(False)
        except (UserdbError, MailUserError) as e:
            self.log.error(f"<{address}>: userdb lookup failed: {e}")
            return self.proto.recipient_checked(
                False, reply(451, "4.3.0", f"<{address}> Temporary internal error"))
        if not self.settings.concurrency.try_begin(user.user):
            return self.proto.recipient_checked(False, reply(
                451, "4.3.0", f"<{address}> Too many concurrent deliveries for user"))
        if self.settings.rcpt_check_quota:
            try:
                full = over_quota(self.settings.cfg, user)
            except StorageError as e:
                self.log.error(f"<{address}>: quota check failed: {e}")
                full = False
            if full:
                self.settings.concurrency.end(user.user)
                code, status = (452, "4.2.2") if self.settings.quota_tempfail else (552, "5.2.2")
                return self.proto.recipient_checked(False, reply(
                    code, status, f"<{address}> Quota exceeded (mailbox for user is full)"))
        detail = self.settings.detail(address) if self.settings.detail_mailbox else None
        self.users.append(Recipient(user, detail, original_recipient(event.params)))
        if self.settings.concurrency.limit > 0:
            self.counted.append(user.user)
        return self.proto.recipient_checked(True)

    def _proxy_rcpt(self, event: CheckRecipient, target: ProxyTarget) -> list[Event]:
        """RCPT on the recipient's backend; its reply is the client's."""
        address = event.address
        session = self.backends.get(target.backend)
        try:
            if session is None:
                session = BackendSession(target.backend, self.settings.hostname)
                try:
                    session.start(self.mail_from)
                except BackendError:
                    session.close()
                    raise
                self.backends[target.backend] = session
            answer = session.rcpt(target, param_text(event.params))
        except BackendError as e:
            self.log.error(f"<{address}>: proxy to {target.backend} failed: {e}")
            return self.proto.recipient_checked(False, reply(
                451, "4.4.0", f"<{address}> Failed to connect to remote server"))
        if not answer.startswith(b"2"):
            return self.proto.recipient_checked(False, answer)
        self.users.append(ProxiedRecipient(target, session, original_recipient(event.params)))
        return self.proto.recipient_checked(True)

    def _proxy_data(self, head: bytes) -> dict[int, bytes]:
        """Send the message to every backend; the backend's reply per proxied recipient
        (keyed by the recipient's position)."""
        assert self.spool is not None
        replies: dict[int, bytes] = {}
        for session in self.backends.values():
            positions = [i for i, r in enumerate(self.users)
                         if isinstance(r, ProxiedRecipient) and r.session is session]
            if not positions:
                continue
            try:
                answers = session.data(received_only(head), self.spool.file)
            except BackendError as e:
                self.log.error(f"proxy to {session.backend} failed: {e}")
                answers = [b""] * len(positions)
            replies.update(zip(positions, answers, strict=True))
        return replies

    def _proxied_reply(self, address: Address, rcpt: ProxiedRecipient, delivery_id: str,
                       answer: bytes) -> bytes:
        if not answer:
            return reply(451, "4.4.0", f"<{address}> Lost connection to remote server")
        self.log.info(f"rcpt {address}: <{delivery_id}>: Sent message to <{rcpt.target.rcpt}> "
                      f"at {rcpt.target.backend}: {last_line(answer)}")
        return saved_reply(address, delivery_id) if answer.startswith(b"2") else answer

    def _deliver_all(self, event: DataEnd) -> list[bytes]:
        assert self.spool is not None
        self.spool.finish()
        env = Envelope(self.sender, self.proto.client_name or "", self.peer,
                       self.settings.hostname)
        single = len(event.recipients) == 1
        shared_head = None if single else trace_headers(
            env, self.proto.transaction_trace_id(self.session_id), delivered_to=None,
            for_address=None, add_received=self.settings.add_received)
        heads = [shared_head or self._own_head(env, address, rcpt,
                                               self.proto.delivery_id(self.session_id, i))
                 for i, (address, rcpt) in enumerate(zip(event.recipients, self.users,
                                                         strict=True))]
        proxied = self._proxy_data(heads[0]) if self.backends else {}
        results = []
        for i, (address, rcpt) in enumerate(zip(event.recipients, self.users, strict=True)):
            delivery_id = self.proto.delivery_id(self.session_id, i)
            if isinstance(rcpt, ProxiedRecipient):
                results.append(self._proxied_reply(address, rcpt, delivery_id,
                                                   proxied.get(i, b"")))
            else:
                results.append(self._deliver_one(env, address, rcpt, delivery_id, heads[i]))
        return results

    def _own_head(self, env: Envelope, address: Address, rcpt: Recipient | ProxiedRecipient,
                  delivery_id: str) -> bytes:
        """A single recipient's trace headers, per lmtp_hdr_delivery_address."""
        final, mode = str(address), self.settings.hdr_address
        delivered_to = final if mode == "final" else rcpt.original if mode == "original" else None
        return trace_headers(env, delivery_id, delivered_to=delivered_to,
                             for_address=rcpt.original if mode == "original" and rcpt.original
                             else final, add_received=self.settings.add_received)

    def _deliver_one(self, env: Envelope, address: Address, rcpt: Recipient,
                     delivery_id: str, head: bytes) -> bytes:
        assert self.spool is not None
        user = rcpt.user
        log = self.log.with_prefix(mail_log_prefix(self.settings.cfg, {
            "service": "lmtp", "user": user.user, "pid": str(os.getpid()),
            "session": delivery_id}))
        mailbox = "INBOX"
        try:
            if rcpt.detail:
                mailbox = choose_mailbox(self.settings.cfg, user, rcpt.detail,
                                         lambda text: log.info(self._log_line(env, head, text)))
            key = journal_key(self.spool, env.sender, str(address))
            uid = deliver(self.settings.cfg, user, self.spool, head, mailbox, key=key)
        except QuotaExceeded as e:
            log.info(self._log_line(env, head, f"save failed to {mailbox}: {e}"))
            if self.settings.quota_tempfail:
                return reply(452, "4.2.2", f"<{address}> {e}")
            return reply(552, "5.2.2", f"<{address}> {e}")
        except (StorageError, OSError) as e:
            log.error(self._log_line(env, head, f"save failed to {mailbox}: {e}"))
            return reply(451, "4.2.0", f"<{address}> Temporary internal error")
        if uid is None:
            log.info(self._log_line(env, head, f"already saved to {mailbox} by an earlier "
                                    "attempt of this transaction (delivery journal), "
                                    "not saved again"))
        else:
            log.info(self._log_line(env, head, f"saved mail to {mailbox}"))
        return saved_reply(address, delivery_id)

    def _log_line(self, env: Envelope, head: bytes, message: str) -> str:
        assert self.spool is not None
        values: Mapping[str, str | None] = log_values(self.spool, env, message, head)
        try:
            return self.settings.log_format.expand(values)
        except VariableError:
            return message

    def state_name(self) -> str:
        t = self.proto.transaction
        if t is None:
            return "READY"
        return "RCPT TO" if t.recipients else "MAIL FROM"

    def close(self) -> None:
        self._end_counted()
        self._end_backends()
        if self.spool is not None:
            self.spool.close()
            self.spool = None


async def handle_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        settings: LmtpSettings, log: Logger) -> None:
    peer = writer.get_extra_info("peername")
    local = writer.get_extra_info("sockname")
    rip = peer[0] if isinstance(peer, tuple) else ""
    lip = local[0] if isinstance(local, tuple) else ""
    conn = LmtpConnection(settings, log, rip, lip, local[1] if isinstance(local, tuple) else 0)
    log.info(f"Connect from {rip or 'local'}")
    reason = "Connection closed"
    try:
        writer.write(conn.greeting())
        while not conn.closed:
            data = await reader.read(READ_CHUNK)
            if not data:
                break
            out = conn.receive(data)
            if out:
                writer.write(out)
                await writer.drain()
        if conn.closed:
            reason = "Logged out"
    except ConnectionError:
        pass
    finally:
        state = conn.state_name()
        conn.close()
        writer.close()
        log.info(f"Disconnect from {rip or 'local'}: {reason} (state={state})")


async def serve(ctx: ServiceContext) -> None:
    loop = asyncio.get_running_loop()
    ctx.install_asyncio_handlers(loop)
    cfg = ctx.config.lookup(protocol="lmtp")
    settings = LmtpSettings(cfg, ctx.base_dir, ctx.anvil)
    log = ctx.log.with_prefix(f"lmtp({os.getpid()}): ")
    done = asyncio.Event()
    servers: list[asyncio.AbstractServer] = []

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ctx.client_connected()
        try:
            await handle_client(reader, writer, settings, log)
        finally:
            ctx.client_disconnected()
            if ctx.should_exit():
                done.set()

    for lst in ctx.listeners:
        if lst.sock is None:
            continue
        if lst.kind == "unix":
            servers.append(await asyncio.start_unix_server(client, sock=lst.sock))
        elif lst.kind == "inet":
            servers.append(await asyncio.start_server(client, sock=lst.sock))

    def stop() -> None:
        for s in servers:
            s.close()
        if ctx.should_exit():
            done.set()

    ctx.on_stop_accepting(stop)
    ctx.status.report(ctx.available())
    await done.wait()


def run(ctx: ServiceContext) -> int:
    asyncio.run(serve(ctx))
    return 0
