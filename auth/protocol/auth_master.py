"""The auth-master / auth-userdb protocol (mail processes, LMTP, LDA, admin ↔ auth), sans-IO.

``ServerConnection`` is the auth daemon's end: it speaks ``VERSION 1 1`` and ``SPID`` on
accept; the client must answer ``VERSION 1 <minor>`` before anything else. Requests become
events (``UserLookup``, ``PassLookup``, ``ListUsers``, ``LoginRequest`` for ``REQUEST``,
``CacheFlush``); the reply methods return the bytes to write. Whether a peer may use
``REQUEST`` (master socket only) or only see its own uid (userdb socket) is the daemon's
policy: the codec reports ``LoginRequest`` and leaves the decision to it.

``ClientConnection`` is the mail process's end: request builders plus reply events.
Malformed input or an unknown command is a ``Disconnect`` (Dovecot drops such peers).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cote.auth.protocol.escape import join_line, split_line
from cote.auth.protocol.lines import LineBuffer

MAJOR_VERSION = 1
SERVER_MINOR_VERSION = 1
CLIENT_MINOR_VERSION = 0
# Dovecot's auth-master input buffer is 1024 bytes (so requests are at most 1023 + LF);
# replies carry every userdb field, so the client end allows far more.
MAX_REQUEST_LINE = 1024
MAX_REPLY_LINE = 65536

Fields = Mapping[str, str | None] | Iterable[tuple[str, str | None]]


def _params(args: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for arg in args:
        key, _, value = arg.partition("=")
        out[key] = value
    return out


def _fields(items: Fields) -> list[str]:
    pairs = items.items() if isinstance(items, Mapping) else items
    return [key if value is None else f"{key}={value}" for key, value in pairs]


def _parse_id(text: str) -> int | None:
    if not text.isdigit() or len(text) > 10:
        return None
    value = int(text)
    return value if value <= 0xFFFFFFFF else None


@dataclass(frozen=True, slots=True)
class Disconnect:
    reason: str


# -- server side ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MasterVersion:
    major: int
    minor: int


@dataclass(frozen=True, slots=True)
class UserLookup:
    id: int
    user: str
    params: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class PassLookup:
    id: int
    user: str
    params: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ListUsers:
    id: int
    params: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class LoginRequest:
    """``REQUEST``: a mail process confirms a login by the login process's pid/id/cookie."""

    id: int
    client_pid: int
    client_id: int
    cookie: str
    params: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class CacheFlush:
    id: int
    users: tuple[str, ...]


ServerEvent = (MasterVersion | UserLookup | PassLookup | ListUsers | LoginRequest | CacheFlush
               | Disconnect)


class ServerConnection:
    """The auth daemon's end of one auth-master or auth-userdb connection."""

    def __init__(self, *, max_line: int = MAX_REQUEST_LINE) -> None:
        self._lines = LineBuffer(max_line)
        self.version_received = False
        self.closed = False

    @staticmethod
    def handshake(spid: int) -> bytes:
        return join_line(["VERSION", str(MAJOR_VERSION), str(SERVER_MINOR_VERSION)]) + \
            join_line(["SPID", str(spid)])

    @staticmethod
    def user(request_id: int, user: str, fields: Fields = ()) -> bytes:
        return join_line(["USER", str(request_id), user, *_fields(fields)])

    @staticmethod
    def passdb(request_id: int, user: str, fields: Fields = ()) -> bytes:
        return join_line(["PASS", str(request_id), f"user={user}", *_fields(fields)])

    @staticmethod
    def notfound(request_id: int) -> bytes:
        return join_line(["NOTFOUND", str(request_id)])

    @staticmethod
    def fail(request_id: int, reason: str | None = None) -> bytes:
        parts = ["FAIL", str(request_id)]
        if reason is not None:
            parts.append(f"reason={reason}")
        return join_line(parts)

    @staticmethod
    def list_user(request_id: int, user: str) -> bytes:
        return join_line(["LIST", str(request_id), user])

    @staticmethod
    def list_done(request_id: int, *, failed: bool = False) -> bytes:
        return join_line(["DONE", str(request_id), "fail" if failed else ""])

    @staticmethod
    def cache_flushed(request_id: int, count: int) -> bytes:
        return join_line(["OK", str(request_id), str(count)])

    def feed(self, data: bytes) -> list[ServerEvent]:
        if self.closed:
            return []
        events: list[ServerEvent] = []
        for line in self._lines.feed(data):
            event = self._line(split_line(line))
            events.append(event)
            if isinstance(event, Disconnect):
                self.closed = True
                return events
        if self._lines.overflowed:
            self.closed = True
            events.append(Disconnect(f"BUG: Master sent us more than {self._lines.limit} bytes"))
        return events

    def _line(self, args: list[str]) -> ServerEvent:
        cmd = args[0]
        if not self.version_received:
            if cmd != "VERSION" or len(args) < 3 or args[1] != str(MAJOR_VERSION):
                return Disconnect("Master not compatible with this server "
                                  "(mixed old and new binaries?)")
            self.version_received = True
            return MasterVersion(MAJOR_VERSION, int(args[2]) if args[2].isdigit() else 0)
        request_id = _parse_id(args[1]) if len(args) > 1 else None
        if cmd in ("USER", "PASS"):
            if request_id is None or len(args) < 3 or not args[2]:
                return Disconnect(f"BUG: Master sent broken {cmd}")
            params = _params(args[3:])
            if not params.get("service"):
                return Disconnect(f"BUG: Master sent {cmd} request without service")
            cls = UserLookup if cmd == "USER" else PassLookup
            return cls(request_id, args[2], params)
        if cmd == "LIST":
            if request_id is None:
                return Disconnect("BUG: Master sent broken LIST")
            return ListUsers(request_id, _params(args[2:]))
        if cmd == "REQUEST":
            if (request_id is None or len(args) < 5 or not args[2].isdigit()
                    or not args[3].isdigit()):
                return Disconnect("BUG: Master sent broken REQUEST")
            return LoginRequest(request_id, int(args[2]), int(args[3]), args[4],
                                _params(args[5:]))
        if cmd == "CACHE-FLUSH":
            if request_id is None:
                return Disconnect("BUG: Master sent broken CACHE-FLUSH")
            return CacheFlush(request_id, tuple(a for a in args[2:] if a))
        shown = "\t".join(args)[:80].replace("\t", "?")
        return Disconnect(f"BUG: Unknown command in master socket: {shown}")


# -- client side -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerHello:
    major: int
    minor: int
    spid: int


@dataclass(frozen=True, slots=True)
class UserReply:
    id: int
    user: str
    fields: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class PassReply:
    id: int
    fields: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class NotFound:
    id: int


@dataclass(frozen=True, slots=True)
class Failure:
    id: int
    reason: str | None


@dataclass(frozen=True, slots=True)
class ListEntry:
    id: int
    user: str


@dataclass(frozen=True, slots=True)
class ListDone:
    id: int
    failed: bool


@dataclass(frozen=True, slots=True)
class CacheFlushed:
    id: int
    count: int


ClientEvent = (ServerHello | UserReply | PassReply | NotFound | Failure | ListEntry | ListDone
               | CacheFlushed | Disconnect)


class ClientConnection:
    """A mail process's (or admin tool's) end of an auth-master/auth-userdb connection."""

    def __init__(self, *, max_line: int = MAX_REPLY_LINE) -> None:
        self._lines = LineBuffer(max_line)
        self._version: tuple[int, int] | None = None
        self.hello_done: ServerHello | None = None
        self.closed = False

    @staticmethod
    def hello() -> bytes:
        return join_line(["VERSION", str(MAJOR_VERSION), str(CLIENT_MINOR_VERSION)])

    @staticmethod
    def user(request_id: int, user: str, params: Mapping[str, str] | None = None) -> bytes:
        return join_line(["USER", str(request_id), user,
                          *[f"{k}={v}" for k, v in (params or {}).items()]])

    @staticmethod
    def passdb(request_id: int, user: str, params: Mapping[str, str] | None = None) -> bytes:
        return join_line(["PASS", str(request_id), user,
                          *[f"{k}={v}" for k, v in (params or {}).items()]])

    @staticmethod
    def list_users(request_id: int, params: Mapping[str, str] | None = None) -> bytes:
        return join_line(["LIST", str(request_id),
                          *[f"{k}={v}" for k, v in (params or {}).items()]])

    @staticmethod
    def request(request_id: int, client_pid: int, client_id: int, cookie: bytes,
                params: Mapping[str, str] | None = None) -> bytes:
        return join_line(["REQUEST", str(request_id), str(client_pid), str(client_id),
                          cookie.hex(), *[f"{k}={v}" for k, v in (params or {}).items()]])

    @staticmethod
    def cache_flush(request_id: int, users: Iterable[str] = ()) -> bytes:
        return join_line(["CACHE-FLUSH", str(request_id), *users])

    def feed(self, data: bytes) -> list[ClientEvent]:
        if self.closed:
            return []
        events: list[ClientEvent] = []
        for line in self._lines.feed(data):
            event = self._line(split_line(line))
            if event is not None:
                events.append(event)
                if isinstance(event, Disconnect):
                    self.closed = True
                    return events
        if self._lines.overflowed:
            self.closed = True
            events.append(Disconnect(f"Auth server sent us more than {self._lines.limit} bytes"))
        return events

    def _line(self, args: list[str]) -> ClientEvent | None:
        cmd = args[0]
        if self.hello_done is None:
            if cmd == "VERSION" and len(args) >= 3 and args[1] == str(MAJOR_VERSION):
                self._version = (MAJOR_VERSION, int(args[2]) if args[2].isdigit() else 0)
                return None
            if cmd == "SPID" and self._version is not None and len(args) >= 2:
                spid = int(args[1]) if args[1].isdigit() else 0
                self.hello_done = ServerHello(*self._version, spid)
                return self.hello_done
            return Disconnect("Auth server sent an incompatible handshake")
        request_id = _parse_id(args[1]) if len(args) > 1 else None
        if request_id is None:
            return Disconnect(f"Auth server sent broken {cmd}")
        if cmd == "USER" and len(args) >= 3:
            return UserReply(request_id, args[2], _params(args[3:]))
        if cmd == "PASS":
            return PassReply(request_id, _params(args[2:]))
        if cmd == "NOTFOUND":
            return NotFound(request_id)
        if cmd == "FAIL":
            return Failure(request_id, _params(args[2:]).get("reason"))
        if cmd == "LIST" and len(args) >= 3:
            return ListEntry(request_id, args[2])
        if cmd == "DONE":
            return ListDone(request_id, len(args) > 2 and args[2] == "fail")
        if cmd == "OK" and len(args) >= 3 and args[2].isdigit():
            return CacheFlushed(request_id, int(args[2]))
        return Disconnect(f"Auth server sent unknown reply: {cmd}")
