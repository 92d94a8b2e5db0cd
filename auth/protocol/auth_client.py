"""The auth-client protocol (login processes, Postfix, Exim ↔ auth), sans-IO, both ends.

``ServerConnection`` is the auth daemon's end: feed it bytes, get typed events
(``ClientVersion``, ``ClientPid``, ``AuthBegin``, ``AuthContinue``, ``AuthCancel``, and
``Reply``/``Disconnect`` for what the protocol answers by itself); its ``handshake``/``cont``/
``ok``/``fail`` methods return the bytes to write. Either side may speak first: Dovecot 2.3
sends its handshake on accept, Postfix sends ``VERSION``/``CPID`` and then reads until
``DONE``; the server handshake does not depend on anything the client said, so the adapter
writes it at once.

``ClientConnection`` is the login process's end, used the same way.

Protocol violations that Dovecot answers by dropping the connection (unknown command, AUTH
before CPID, duplicate or zero id, unknown mechanism, missing service, parameters after
``resp=``, over-long lines) produce a ``Disconnect`` event with Dovecot's log wording; nothing
is raised out of ``feed``.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from cote.auth.protocol.escape import join_line, split_line
from cote.auth.protocol.lines import LineBuffer

MAJOR_VERSION = 1
MINOR_VERSION = 2
MAX_LINE_LENGTH = 16384


class MechFlag(enum.IntFlag):
    """Security properties advertised with each ``MECH`` (Dovecot's bit order)."""

    PRIVATE = 0x01
    ANONYMOUS = 0x02
    PLAINTEXT = 0x04
    DICTIONARY = 0x08
    ACTIVE = 0x10
    FORWARD_SECRECY = 0x20
    MUTUAL_AUTH = 0x40


NO_FLAGS = MechFlag(0)
_FLAG_NAMES = (
    (MechFlag.PRIVATE, "private"), (MechFlag.ANONYMOUS, "anonymous"),
    (MechFlag.PLAINTEXT, "plaintext"), (MechFlag.DICTIONARY, "dictionary"),
    (MechFlag.ACTIVE, "active"), (MechFlag.FORWARD_SECRECY, "forward-secrecy"),
    (MechFlag.MUTUAL_AUTH, "mutual-auth"),
)
_FLAG_BY_NAME = {name: flag for flag, name in _FLAG_NAMES}


def flag_names(flags: MechFlag) -> list[str]:
    return [name for flag, name in _FLAG_NAMES if flags & flag]


@dataclass(frozen=True, slots=True)
class MechanismInfo:
    name: str
    flags: MechFlag = NO_FLAGS


# -- events seen by the server ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientVersion:
    major: int
    minor: int


@dataclass(frozen=True, slots=True)
class ClientPid:
    pid: int


@dataclass(frozen=True, slots=True)
class AuthBegin:
    """``AUTH``: start request ``id``. ``initial_response`` is None when no ``resp=`` was sent."""

    id: int
    mechanism: str
    service: str
    params: Mapping[str, str]
    flags: frozenset[str]
    initial_response: bytes | None

    @property
    def secured(self) -> bool:
        return "secured" in self.flags or "secured" in self.params

    def param(self, name: str, default: str = "") -> str:
        return self.params.get(name, default)


@dataclass(frozen=True, slots=True)
class AuthContinue:
    id: int
    response: bytes


@dataclass(frozen=True, slots=True)
class AuthCancel:
    id: int


@dataclass(frozen=True, slots=True)
class Reply:
    """Bytes the protocol answers by itself (e.g. FAIL for an unknown request id)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Disconnect:
    """A protocol violation: log ``reason`` and close the connection."""

    reason: str


ServerEvent = ClientVersion | ClientPid | AuthBegin | AuthContinue | AuthCancel | Reply | Disconnect


def _parse_id(text: str) -> int | None:
    if not text.isdigit() or len(text) > 10:
        return None
    value = int(text)
    return value if 0 < value <= 0xFFFFFFFF else None


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None


def _fields(items: Mapping[str, str | None] | Iterable[tuple[str, str | None]]) -> list[str]:
    pairs = items.items() if isinstance(items, Mapping) else items
    return [key if value is None else f"{key}={value}" for key, value in pairs]


class ServerConnection:
    """The auth daemon's end of one auth-client connection."""

    def __init__(self, mechanisms: Iterable[str], *, max_line: int = MAX_LINE_LENGTH) -> None:
        self.mechanisms = frozenset(m.upper() for m in mechanisms)
        self._lines = LineBuffer(max_line)
        self.version_received = False
        self.pid: int | None = None
        self.closed = False
        self.active: set[int] = set()

    @property
    def handshake_done(self) -> bool:
        return self.pid is not None

    # -- output ---------------------------------------------------------------------------
    @staticmethod
    def handshake(mechanisms: Sequence[MechanismInfo], *, spid: int, cuid: int,
                  cookie: bytes) -> bytes:
        """``VERSION``, one ``MECH`` per mechanism, ``SPID``, ``CUID``, ``COOKIE``, ``DONE``."""
        out = [join_line(["VERSION", str(MAJOR_VERSION), str(MINOR_VERSION)])]
        out += [join_line(["MECH", m.name, *flag_names(m.flags)]) for m in mechanisms]
        out.append(join_line(["SPID", str(spid)]))
        out.append(join_line(["CUID", str(cuid)]))
        out.append(join_line(["COOKIE", cookie.hex()]))
        out.append(b"DONE\n")
        return b"".join(out)

    def cont(self, request_id: int, challenge: bytes) -> bytes:
        return join_line(["CONT", str(request_id), base64.b64encode(challenge).decode("ascii")])

    def ok(self, request_id: int, user: str,
           fields: Mapping[str, str | None] | Iterable[tuple[str, str | None]] = ()) -> bytes:
        self.active.discard(request_id)
        return join_line(["OK", str(request_id), f"user={user}", *_fields(fields)])

    def fail(self, request_id: int, *, user: str | None = None, code: str | None = None,
             reason: str | None = None,
             fields: Mapping[str, str | None] | Iterable[tuple[str, str | None]] = ()) -> bytes:
        self.active.discard(request_id)
        parts = ["FAIL", str(request_id)]
        if user is not None:  # Dovecot: user= first, then code= (checked against 2.3.19)
            parts.append(f"user={user}")
        if code is not None:
            parts.append(f"code={code}")
        parts += _fields(fields)
        if reason is not None:
            parts.append(f"reason={reason}")
        return join_line(parts)

    # -- input ----------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[ServerEvent]:
        if self.closed:
            return []
        events: list[ServerEvent] = []
        for line in self._lines.feed(data):
            event = self._line(line)
            if event is not None:
                events.append(event)
                if isinstance(event, Disconnect):
                    self.closed = True
                    return events
        if self._lines.overflowed:
            self.closed = True
            events.append(Disconnect(f"BUG: Auth client sent us more than "
                                     f"{self._lines.limit} bytes"))
        return events

    def _line(self, line: bytes) -> ServerEvent | None:
        args = split_line(line)
        cmd = args[0]
        if not self.version_received:
            if cmd != "VERSION" or len(args) < 3:
                return Disconnect("Authentication client didn't send VERSION first")
            if args[1] != str(MAJOR_VERSION):
                return Disconnect("Authentication client not compatible with this server "
                                  "(mixed old and new binaries?)")
            self.version_received = True
            minor = int(args[2]) if args[2].isdigit() else 0
            return ClientVersion(MAJOR_VERSION, minor)
        if self.pid is None:
            if cmd != "CPID":
                return Disconnect("BUG: Authentication client sent unknown handshake "
                                  f"command: {_sanitize(line)}")
            if len(args) < 2 or not args[1].isdigit() or int(args[1]) == 0:
                return Disconnect("BUG: Authentication client said it's PID 0")
            self.pid = int(args[1])
            return ClientPid(self.pid)
        if cmd == "AUTH":
            return self._auth(args)
        if cmd == "CONT":
            return self._cont(args)
        if cmd == "CANCEL":
            if len(args) < 2 or (request_id := _parse_id(args[1])) is None:
                return Disconnect("BUG: Authentication client sent broken CANCEL request")
            if request_id not in self.active:
                return None
            self.active.discard(request_id)
            return AuthCancel(request_id)
        return Disconnect(f"BUG: Authentication client sent unknown command: {_sanitize(line)}")

    def _auth(self, args: list[str]) -> ServerEvent:
        if len(args) < 3 or (request_id := _parse_id(args[1])) is None:
            return Disconnect("BUG: Authentication client sent broken AUTH request")
        mechanism = args[2].upper()
        if mechanism not in self.mechanisms:
            return Disconnect("BUG: Authentication client requested unsupported "
                              f"authentication mechanism {mechanism}")
        params: dict[str, str] = {}
        flags: set[str] = set()
        response: str | None = None
        for arg in args[3:]:
            if response is not None:
                return Disconnect("BUG: Authentication client sent AUTH parameters after 'resp'")
            key, sep, value = arg.partition("=")
            if key == "resp" and sep:
                response = value
            elif sep:
                params[key] = value
            else:
                flags.add(key)
        service = params.get("service") or params.get("protocol")
        if not service:
            return Disconnect("BUG: Authentication client didn't specify service in request")
        if request_id in self.active:
            return Disconnect(f"BUG: Authentication client sent a duplicate ID {request_id}")
        initial: bytes | None = None
        if response is not None:
            initial = _b64decode(response)
            if initial is None:
                return Reply(self.fail(request_id, code="invalid_base64",
                                       reason="Invalid base64 data in initial response"))
        self.active.add(request_id)
        return AuthBegin(request_id, mechanism, service, params, frozenset(flags), initial)

    def _cont(self, args: list[str]) -> ServerEvent:
        if len(args) < 3 or (request_id := _parse_id(args[1])) is None:
            return Disconnect("BUG: Authentication client sent broken CONT request")
        if request_id not in self.active:
            return Reply(self.fail(request_id, reason="Authentication request timed out"))
        data = _b64decode(args[2])
        if data is None:
            return Reply(self.fail(request_id, code="invalid_base64",
                                   reason="Invalid base64 data in continued response"))
        return AuthContinue(request_id, data)


def _sanitize(line: bytes, limit: int = 80) -> str:
    text = line.decode("utf-8", "replace").replace("\t", "?")
    return text if len(text) <= limit else text[:limit] + "..."


# -- the client end (login processes) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerHandshake:
    """The complete server handshake, delivered at ``DONE``."""

    major: int
    minor: int
    mechanisms: tuple[MechanismInfo, ...]
    spid: int
    cuid: int
    cookie: bytes


@dataclass(frozen=True, slots=True)
class Continue:
    id: int
    challenge: bytes


@dataclass(frozen=True, slots=True)
class Success:
    id: int
    user: str
    fields: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Failure:
    id: int
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def reason(self) -> str | None:
        return self.fields.get("reason")

    @property
    def code(self) -> str | None:
        return self.fields.get("code")

    @property
    def user(self) -> str | None:
        return self.fields.get("user")


ClientEvent = ServerHandshake | Continue | Success | Failure | Disconnect


def _field_map(args: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for arg in args:
        key, _, value = arg.partition("=")
        out[key] = value
    return out


class ClientConnection:
    """A login process's end of an auth-client connection."""

    def __init__(self, *, max_line: int = MAX_LINE_LENGTH) -> None:
        self._lines = LineBuffer(max_line)
        self._mechs: list[MechanismInfo] = []
        self._hs: dict[str, str] = {}
        self.handshake: ServerHandshake | None = None
        self.closed = False

    @staticmethod
    def hello(pid: int) -> bytes:
        return join_line(["VERSION", str(MAJOR_VERSION), str(MINOR_VERSION)]) + \
            join_line(["CPID", str(pid)])

    @staticmethod
    def auth(request_id: int, mechanism: str, *, service: str,
             params: Mapping[str, str] | None = None, flags: Iterable[str] = (),
             initial_response: bytes | None = None) -> bytes:
        parts = ["AUTH", str(request_id), mechanism, f"service={service}"]
        parts += [f"{k}={v}" for k, v in (params or {}).items()]
        parts += list(flags)
        if initial_response is not None:
            parts.append("resp=" + base64.b64encode(initial_response).decode("ascii"))
        return join_line(parts)

    @staticmethod
    def cont(request_id: int, response: bytes) -> bytes:
        return join_line(["CONT", str(request_id), base64.b64encode(response).decode("ascii")])

    @staticmethod
    def cancel(request_id: int) -> bytes:
        return join_line(["CANCEL", str(request_id)])

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
        if self.handshake is None:
            if cmd == "MECH" and len(args) >= 2:
                flags = MechFlag(0)
                for name in args[2:]:
                    flags |= _FLAG_BY_NAME.get(name, MechFlag(0))
                self._mechs.append(MechanismInfo(args[1], flags))
            elif cmd == "DONE":
                return self._finish_handshake()
            elif cmd in ("VERSION", "SPID", "CUID", "COOKIE") and len(args) >= 2:
                self._hs[cmd] = "\t".join(args[1:])
            # Unknown handshake lines are ignored (newer servers add some).
            return None
        if len(args) < 2 or (request_id := _parse_id(args[1])) is None:
            return Disconnect(f"Auth server sent broken line: {cmd}")
        if cmd == "CONT":
            challenge = _b64decode(args[2] if len(args) > 2 else "")
            if challenge is None:
                return Disconnect("Auth server sent invalid base64 in CONT")
            return Continue(request_id, challenge)
        if cmd == "OK":
            fields = _field_map(args[2:])
            return Success(request_id, fields.pop("user", ""), fields)
        if cmd == "FAIL":
            return Failure(request_id, _field_map(args[2:]))
        return None  # unknown replies are ignored for forward compatibility

    def _finish_handshake(self) -> ClientEvent:
        version = self._hs.get("VERSION", "").split("\t")
        if len(version) < 2 or version[0] != str(MAJOR_VERSION):
            return Disconnect("Auth server sent an incompatible VERSION")
        try:
            spid = int(self._hs.get("SPID", "0"))
            cuid = int(self._hs.get("CUID", "0"))
            cookie = bytes.fromhex(self._hs.get("COOKIE", ""))
            minor = int(version[1])
        except ValueError:
            return Disconnect("Auth server sent a broken handshake")
        self.handshake = ServerHandshake(MAJOR_VERSION, minor, tuple(self._mechs),
                                         spid, cuid, cookie)
        return self.handshake
