"""Proxying, the asyncio half: connect to the backend and drive :mod:`cote.login.proxy`.

``backend_login`` opens the connection (implicit TLS or STARTTLS as the target says), runs the
sans-IO backend dialogue within ``proxy_timeout`` and returns the open streams with the reply
the client must see, or why the login did not happen. The login server then relays bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from dataclasses import dataclass

from cote.auth.protocol.escape import escape_bytes
from cote.log import Logger
from cote.login.managesieve_proxy import ManageSieveBackendLogin
from cote.login.proxy import (
    BackendBroken,
    ImapBackendLogin,
    LoggedIn,
    LoginRefused,
    Pop3BackendLogin,
    ProxyTarget,
    Send,
    StartBackendTls,
)

READ_CHUNK = 65536
NOTIFY_REOPEN_SECS = 60.0  # after a failed open of the notify fifo, as Dovecot waits


class ProxyNotify:
    """``proxy_refresh=<secs>``: while a client is proxied, its (destination) user name is
    written to the ``proxy-notify`` fifo every ``secs`` seconds, one tab-escaped line each
    time, so that whoever reads it (Dovecot's director) knows the user is still active.
    One descriptor per process, opened on first use without blocking; when nobody reads
    the fifo the error is logged and the open retried a minute later, as Dovecot 2.3 does."""

    def __init__(self, path: str, log: Logger) -> None:
        self.path = path
        self.log = log
        self.fd: int | None = None
        self.retry_at = 0.0

    def _open(self) -> bool:
        if self.fd is not None:
            return True
        if time.monotonic() < self.retry_at:
            return False
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            self.log.error(f"open({self.path}) failed: {e.strerror}")
            self.retry_at = time.monotonic() + NOTIFY_REOPEN_SECS
            return False
        return True

    def _close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None

    def notify(self, user: str) -> None:
        line = escape_bytes(user.encode("utf-8", "surrogateescape")) + b"\n"
        for _ in range(2):  # a reader that went away: reopen once and retry
            if not self._open():
                return
            assert self.fd is not None
            try:
                written = os.write(self.fd, line)
            except OSError as e:
                self.log.error(f"write({self.path}) failed: {e.strerror}")
                self._close()
                continue
            if written == len(line):
                return
            self.log.error(f"write({self.path}) wrote partial update")
            self._close()

    async def every(self, secs: int, user: str) -> None:
        """Notify every ``secs`` seconds until cancelled (the proxied session ended)."""
        while True:
            await asyncio.sleep(secs)
            self.notify(user)


@dataclass
class BackendSession:
    """A logged-in backend connection: relay between it and the client."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    reply: bytes  # the backend's login answer (and anything after it) for the client


@dataclass(frozen=True, slots=True)
class BackendFailure:
    refused: bool  # True: the backend said no to the credentials (reply goes to the client)
    reply: bytes
    log: str


def tls_context(target: ProxyTarget) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if target.ssl == "any-cert":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def backend_login(target: ProxyTarget,
                        dialogue: ImapBackendLogin | Pop3BackendLogin | ManageSieveBackendLogin
                        ) -> BackendSession | BackendFailure:
    deadline = time.monotonic() + target.timeout
    context = tls_context(target) if target.ssl else None
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            target.address, target.port,
            ssl=context if context is not None and not target.starttls else None,
            server_hostname=target.host if context is not None and not target.starttls
            else None, local_addr=(target.source_ip, 0) if target.source_ip else None),
            target.timeout)
    except (OSError, ssl.SSLError) as e:
        secs = int(time.monotonic() - started)
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        return BackendFailure(False, b"", f"connect({target.host}, {target.port}) failed: "
                                          f"{reason} (after {secs} secs)")
    except TimeoutError:
        return BackendFailure(False, b"", f"connect({target.host}, {target.port}) failed: "
                                          f"Connection timed out in {int(target.timeout)} secs")
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            data = await asyncio.wait_for(reader.read(READ_CHUNK), remaining)
            if not data:
                writer.close()
                return BackendFailure(False, b"", "Remote server disconnected unexpectedly")
            events = dialogue.feed(data)
            while events:
                event, events = events[0], events[1:]
                if isinstance(event, Send):
                    writer.write(event.data)
                elif isinstance(event, StartBackendTls):
                    assert context is not None
                    await asyncio.wait_for(writer.start_tls(context, server_hostname=target.host),
                                           max(deadline - time.monotonic(), 0.001))
                    events = dialogue.tls_started() + events
                elif isinstance(event, LoggedIn):
                    return BackendSession(reader, writer, event.reply + dialogue.leftover())
                elif isinstance(event, LoginRefused):
                    writer.close()
                    return BackendFailure(True, event.reply, f"Login failed: {event.log}")
                elif isinstance(event, BackendBroken):
                    writer.close()
                    return BackendFailure(False, b"", event.log)
    except TimeoutError:
        writer.close()
        secs = int(time.monotonic() - started)
        return BackendFailure(False, b"", f"Login timed out in state={dialogue.state} "
                                          f"(after {secs} secs)")
    except (OSError, ssl.SSLError) as e:
        with contextlib.suppress(Exception):
            writer.close()
        return BackendFailure(False, b"", f"Remote server connection failed: {e}")
    except asyncio.CancelledError:  # the client left while we were logging in
        writer.close()
        raise
