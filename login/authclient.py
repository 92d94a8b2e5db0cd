"""A login process's connection to the auth daemon (auth-client protocol), on asyncio.

One connection per login process carries every client's authentication, multiplexed by
request id, as Dovecot's login processes do. The protocol itself is the sans-IO codec in
``cote.auth.protocol.auth_client``; this module only moves bytes and routes replies to the
waiting client. If the daemon goes away, every pending request fails as a temporary failure
and the next request reconnects.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterable, Mapping

from cote.auth.protocol.auth_client import (
    ClientConnection,
    Continue,
    Disconnect,
    Failure,
    MechanismInfo,
    ServerHandshake,
    Success,
)

Reply = Continue | Success | Failure
CONNECT_TIMEOUT = 10.0


class AuthUnavailable(Exception):
    """The auth daemon cannot be reached (or dropped the connection)."""


class AuthRequest:
    """One client's authentication: read replies with :meth:`next`, answer with :meth:`respond`."""

    def __init__(self, client: AuthClient, request_id: int) -> None:
        self.client = client
        self.id = request_id
        self.replies: asyncio.Queue[Reply] = asyncio.Queue()
        self.done = False

    async def next(self) -> Reply:
        reply = await self.replies.get()
        if not isinstance(reply, Continue):
            self.done = True
            self.client.forget(self.id)
        return reply

    def respond(self, data: bytes) -> None:
        self.client.send(ClientConnection.cont(self.id, data))

    def cancel(self) -> None:
        if not self.done:
            self.done = True
            self.client.forget(self.id)
            self.client.send(ClientConnection.cancel(self.id))


class AuthClient:
    def __init__(self, path: str, service: str) -> None:
        self.path = path
        self.service = service
        self.handshake: ServerHandshake | None = None
        self._codec = ClientConnection()
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, AuthRequest] = {}
        self._ids = itertools.count(1)
        self._connecting: asyncio.Lock | None = None

    @property
    def connected(self) -> bool:
        return self.handshake is not None and self._writer is not None

    @property
    def mechanisms(self) -> tuple[MechanismInfo, ...]:
        return self.handshake.mechanisms if self.handshake else ()

    async def connect(self) -> ServerHandshake:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self.connected:
                assert self.handshake is not None
                return self.handshake
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_unix_connection(self.path), CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as e:
                raise AuthUnavailable(f"connect({self.path}) failed: {e}") from e
            self._codec = ClientConnection()
            writer.write(ClientConnection.hello(os.getpid()))
            handshake = await self._read_handshake(reader)
            self._writer = writer
            self.handshake = handshake
            self._reader_task = asyncio.create_task(self._read_replies(reader))
            return handshake

    async def _read_handshake(self, reader: asyncio.StreamReader) -> ServerHandshake:
        while True:
            try:
                data = await asyncio.wait_for(reader.read(65536), CONNECT_TIMEOUT)
            except TimeoutError as e:
                raise AuthUnavailable("auth server sent no handshake") from e
            if not data:
                raise AuthUnavailable("auth server closed the connection during handshake")
            for event in self._codec.feed(data):
                if isinstance(event, ServerHandshake):
                    return event
                if isinstance(event, Disconnect):
                    raise AuthUnavailable(event.reason)

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        reason = "auth server closed the connection"
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                for event in self._codec.feed(data):
                    if isinstance(event, Disconnect):
                        reason = event.reason
                        return
                    if isinstance(event, Continue | Success | Failure):
                        request = self._pending.get(event.id)
                        if request is not None:
                            request.replies.put_nowait(event)
        except OSError as e:
            reason = str(e)
        finally:
            self._lost(reason)

    def _lost(self, reason: str) -> None:
        self.handshake = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        pending, self._pending = self._pending, {}
        for request in pending.values():
            request.replies.put_nowait(Failure(request.id, {"code": "temp_fail",
                                                            "reason": reason, "lost": "1"}))

    async def start(self, mechanism: str, *, params: Mapping[str, str],
                    flags: Iterable[str] = (), initial_response: bytes | None = None
                    ) -> AuthRequest:
        await self.connect()
        request = AuthRequest(self, next(self._ids))
        self._pending[request.id] = request
        self.send(ClientConnection.auth(request.id, mechanism, service=self.service,
                                        params=params, flags=flags,
                                        initial_response=initial_response))
        return request

    def send(self, data: bytes) -> None:
        if self._writer is not None:
            self._writer.write(data)

    def forget(self, request_id: int) -> None:
        self._pending.pop(request_id, None)

    def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.handshake = None
