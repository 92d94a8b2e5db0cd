"""A mail process's questions to the auth daemon over auth-master (blocking, one at a time).

A mail process serves one client at a time, so a blocking socket is the simple and correct
tool: the process has nothing else to do until it knows whose mail it may touch.
``confirm_login`` is how it learns that a login process really authenticated this client
(REQUEST with the login process's pid, request id and cookie); ``lookup_user`` is LMTP's and
admin tools' USER query.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass

from cote.auth.protocol.auth_master import (
    ClientConnection,
    Disconnect,
    Failure,
    NotFound,
    ServerHello,
    UserReply,
)

TIMEOUT = 30.0
PRECONNECT_TIMEOUT = 2.0  # a spare must not sit out a slow daemon before it can serve


class UserdbError(Exception):
    """The auth daemon could not answer (unreachable, broke the protocol, or said FAIL)."""


class _Closed(UserdbError):
    """The daemon closed the connection (e.g. it restarted while a spare process waited)."""


class UserNotFound(Exception):
    """The auth daemon answered NOTFOUND."""


@dataclass(frozen=True, slots=True)
class UserdbReply:
    user: str
    fields: Mapping[str, str]
    auth_pid: int  # the daemon's SPID, to check against the login process's auth server


class MasterConnection:
    """One auth-master connection with its handshake done."""

    def __init__(self, path: str, handshake_timeout: float = TIMEOUT) -> None:
        self.codec = ClientConnection()
        self.closed = False  # the daemon hung up (or we did): open a new connection
        self._last_id = 0
        try:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(handshake_timeout)
            self.sock.connect(path)
            self.sock.sendall(ClientConnection.hello())
        except OSError as e:
            raise UserdbError(f"connect({path}) failed: {e}") from e
        hello = self._until(ServerHello)
        if not isinstance(hello, ServerHello):
            self.sock.close()
            raise UserdbError("auth-master sent no handshake")
        self.hello = hello
        self.sock.settimeout(TIMEOUT)

    def _until(self, kind: type) -> object:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError as e:
                self.closed = True  # a timeout leaves the stream out of step
                raise UserdbError(f"auth-master: {e}") from e
            if not data:
                self.closed = True
                raise _Closed("auth-master closed the connection")
            for event in self.codec.feed(data):
                if isinstance(event, Disconnect):
                    self.closed = True
                    raise UserdbError(event.reason)
                if isinstance(event, kind | NotFound | Failure):
                    return event

    def next_id(self) -> int:
        """A request id not used on this connection before (one connection may serve the
        requests of several sessions of a process with ``service_count != 1``)."""
        self._last_id += 1
        return self._last_id

    def ask(self, line: bytes) -> UserdbReply:
        try:
            self.sock.sendall(line)
        except OSError as e:
            self.closed = True
            raise _Closed(f"auth-master: {e}") from e
        event = self._until(UserReply)
        if isinstance(event, NotFound):
            raise UserNotFound()
        if isinstance(event, Failure):
            raise UserdbError(event.reason or "auth-master lookup failed")
        assert isinstance(event, UserReply)
        return UserdbReply(event.user, dict(event.fields), self.hello.spid)

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def connect(path: str) -> MasterConnection | None:
    """An auth-master connection with its handshake done, for a process to open while it
    waits for work (``confirm_login(..., ready=)``); None if the daemon cannot be reached
    now (the request then connects itself and reports the error)."""
    try:
        return MasterConnection(path, handshake_timeout=PRECONNECT_TIMEOUT)
    except UserdbError:
        return None


def confirm_login(path: str, *, auth_pid: int, client_pid: int, client_id: int,
                  cookie: bytes, ready: MasterConnection | None = None,
                  keep: bool = False) -> UserdbReply:
    """REQUEST: the userdb reply for a login the auth daemon really accepted. ``ready``:
    a connection opened in advance (see ``connect``); if the daemon has closed it
    meanwhile (restarted), a new one is opened. ``keep``: leave ``ready`` open after the
    answer, for the process's next client (it is closed when it served another daemon)."""
    if ready is not None and auth_pid and ready.hello.spid == auth_pid:
        try:
            return ready.ask(ClientConnection.request(ready.next_id(), client_pid, client_id,
                                                      cookie))
        except _Closed:
            pass
        finally:
            if not keep:
                ready.close()
    elif ready is not None:
        ready.close()
    session = MasterConnection(path)
    try:
        if auth_pid and session.hello.spid != auth_pid:
            raise UserdbError(f"auth server pid {session.hello.spid} is not the one the login "
                              f"process authenticated with ({auth_pid})")
        return session.ask(ClientConnection.request(1, client_pid, client_id, cookie))
    finally:
        session.close()


def lookup_user(path: str, user: str, params: Mapping[str, str],
                via: MasterConnection | None = None) -> UserdbReply:
    """USER: the userdb fields of ``user`` (``params``: service=, lip=, rip=, ...).
    ``via``: an open connection to ask on and leave open (a process that is no longer root
    cannot open a new one), else one is opened for the question."""
    if via is not None and not via.closed:
        return via.ask(ClientConnection.user(via.next_id(), user, params))
    session = MasterConnection(path)
    try:
        return session.ask(ClientConnection.user(1, user, params))
    finally:
        session.close()
