"""Proxying a logged-in client to a backend IMAP/POP3 server: the sans-IO half.

When the passdb answers with ``proxy`` (or ``proxy_maybe`` pointing elsewhere), the login
process does not hand the client to a local mail process: it logs in to ``host:port`` with
the client's credentials (or ``destuser``/``pass``/``master``) and then relays bytes. This
module reads the auth reply's fields into a :class:`ProxyTarget` and runs the backend side of
the login as a machine: backend bytes in, :data:`BackendEvent` out (bytes to send, switch to
TLS, logged in, refused, broken). The asyncio adapter is :mod:`cote.login.proxy_session`.

The backend is told who the client really is, as Dovecot's proxies do: IMAP ``ID`` with
``x-originating-ip``/``x-session-id``… when the banner announces ID, POP3 ``XCLIENT`` when the
banner starts with ``+OK [XCLIENT]`` (both only honoured by a backend that trusts us).
"""

from __future__ import annotations

import abc
import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_PORTS = {("imap", False): 143, ("imap", True): 993, ("pop3", False): 110,
                 ("pop3", True): 995, ("sieve", False): 4190, ("sieve", True): 4190}
DEFAULT_TIMEOUT = 30.0  # seconds to connect and log in (proxy_timeout overrides)
DEFAULT_TTL = 5  # hops a proxied login may take before a loop is assumed
MAX_BACKEND_LINE = 65536
# What the backend login can speak (Dovecot 2.3's SASL client has these two for passwords).
SASL_MECHANISMS = ("PLAIN", "LOGIN")


@dataclass(frozen=True, slots=True)
class ProxyTarget:
    """Where and as whom to log in, from the auth OK fields."""

    host: str
    port: int
    user: str  # destuser, or the authenticated user
    password: str
    master: str = ""  # log in as this master user on behalf of ``user``
    ssl: str = ""  # "" plaintext, "yes" verified TLS, "any-cert" unverified TLS
    starttls: bool = False  # STARTTLS/STLS after the banner instead of implicit TLS
    timeout: float = DEFAULT_TIMEOUT
    maybe: bool = False  # proxy_maybe: log in locally if the target is this server
    ttl: int = DEFAULT_TTL
    hostip: str = ""  # the host's address, given so that no DNS lookup is needed
    not_trusted: bool = False  # proxy_not_trusted: do not forward the client's facts
    source_ip: str = ""  # source_ip: connect from this local address
    mech: str = ""  # proxy_mech (PLAIN or LOGIN): AUTHENTICATE/AUTH instead of LOGIN/USER+PASS
    nopipelining: bool = False  # proxy_nopipelining: wait for each backend answer
    refresh: int = 0  # proxy_refresh: name the user on the proxy-notify fifo every n seconds
    always: bool = False  # proxy_always: proxy_maybe to ourselves still proxies (no host)

    @property
    def address(self) -> str:
        """Where to connect: ``hostip`` when given, else ``host``."""
        return self.hostip or self.host

    def is_ourself(self, local_ip: str, local_port: int) -> bool:
        return self.address == local_ip and self.port == local_port


@dataclass(frozen=True, slots=True)
class ClientFacts:
    """What the backend is told about the real client (ID / XCLIENT)."""

    remote_ip: str
    remote_port: int
    local_ip: str
    local_port: int
    session: str


def proxy_target(fields: Mapping[str, str], *, protocol: str, user: str,
                 password: str | None) -> ProxyTarget | None:
    """The proxy destination, or None when the reply asks for a local login.

    ``password`` is the one the client logged in with (used when the passdb gave no ``pass``).
    Raises ValueError for a proxy reply that cannot be used (no host, bad port)."""
    maybe = "proxy_maybe" in fields
    if "proxy" not in fields and not maybe:
        return None
    host = fields.get("host", "") or fields.get("hostip", "")
    if not host:
        raise ValueError("host not given")
    ssl_value = fields.get("ssl", "")
    starttls_value = fields.get("starttls", "")
    ssl = ""
    starttls = False
    if starttls_value in ("yes", "any-cert"):
        starttls = True
        ssl = "any-cert" if starttls_value == "any-cert" else "yes"
    elif ssl_value in ("yes", "any-cert"):
        ssl = ssl_value
    elif ssl_value not in ("", "no"):
        raise ValueError(f"invalid ssl value: {ssl_value}")
    port_text = fields.get("port", "")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"invalid port number {port_text}")
        port = int(port_text)
    else:
        port = DEFAULT_PORTS[(protocol, bool(ssl) and not starttls)]
    timeout = DEFAULT_TIMEOUT
    timeout_text = fields.get("proxy_timeout", "")
    if timeout_text:
        try:
            timeout = float(timeout_text.removesuffix("s"))
        except ValueError:
            raise ValueError(f"invalid proxy_timeout value: {timeout_text}") from None
    ttl = DEFAULT_TTL
    if fields.get("proxy_ttl", "").isdigit():
        ttl = int(fields["proxy_ttl"])
    mech = ""
    if fields.get("proxy_mech"):
        mech = fields["proxy_mech"].upper()
        if mech not in SASL_MECHANISMS:
            raise ValueError(f"Unsupported SASL mechanism {fields['proxy_mech']}")
    refresh_text = fields.get("proxy_refresh", "")
    if refresh_text and not refresh_text.isdigit():
        raise ValueError(f"invalid proxy_refresh value: {refresh_text}")
    return ProxyTarget(host=host, port=port, user=fields.get("destuser") or user,
                       password=fields.get("pass", password or ""),
                       master=fields.get("master", ""), ssl=ssl, starttls=starttls,
                       timeout=timeout, maybe=maybe, ttl=ttl, hostip=fields.get("hostip", ""),
                       not_trusted="proxy_not_trusted" in fields,
                       source_ip=fields.get("source_ip", ""), mech=mech,
                       nopipelining="proxy_nopipelining" in fields,
                       refresh=int(refresh_text or 0), always="proxy_always" in fields)


def plaintext_password(mechanism: str, responses: list[bytes]) -> str | None:
    """The password in a PLAIN or LOGIN exchange (the client's responses, in order)."""
    if mechanism == "PLAIN" and responses:
        parts = responses[0].split(b"\0")
        if len(parts) == 3:
            return parts[2].decode("utf-8", "surrogateescape")
    if mechanism == "LOGIN" and len(responses) >= 2:
        return responses[-1].decode("utf-8", "surrogateescape")
    return None


# -- events ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Send:
    """Bytes for the backend."""

    data: bytes


@dataclass(frozen=True, slots=True)
class StartBackendTls:
    """The backend accepted STARTTLS/STLS: do the TLS handshake, then call ``tls_started``."""


@dataclass(frozen=True, slots=True)
class LoggedIn:
    """The backend accepted the login; ``reply`` goes to the client, then bytes are relayed."""

    reply: bytes


@dataclass(frozen=True, slots=True)
class LoginRefused:
    """The backend refused the credentials; ``reply`` goes to the client as the auth answer."""

    reply: bytes
    log: str  # "Login failed: <log>"


@dataclass(frozen=True, slots=True)
class BackendBroken:
    """The backend said something unexpected; the client gets a temporary failure."""

    log: str


BackendEvent = Send | StartBackendTls | LoggedIn | LoginRefused | BackendBroken


class _LineMachine(abc.ABC):
    def __init__(self) -> None:
        self.buffer = b""
        self.done = False

    def feed(self, data: bytes) -> list[BackendEvent]:
        self.buffer += data
        events: list[BackendEvent] = []
        while not self.done:
            end = self.buffer.find(b"\n")
            if end < 0:
                if len(self.buffer) > MAX_BACKEND_LINE:
                    self.done = True
                    events.append(BackendBroken("Remote server sent too long line"))
                break
            line, self.buffer = self.buffer[:end].rstrip(b"\r"), self.buffer[end + 1:]
            events += self.line(line)
        return events

    @abc.abstractmethod
    def line(self, line: bytes) -> list[BackendEvent]:
        """One backend line without its CRLF."""

    @abc.abstractmethod
    def tls_started(self) -> list[BackendEvent]:
        """The TLS handshake with the backend is done."""

    def finish(self, event: BackendEvent) -> list[BackendEvent]:
        self.done = True
        return [event]

    def leftover(self) -> bytes:
        """Backend bytes after the login answer: they belong to the client."""
        data, self.buffer = self.buffer, b""
        return data


def _invalid(line: bytes, what: str) -> BackendBroken:
    return BackendBroken(f"Remote server sent invalid input: {what}: "
                         f"{line.decode('utf-8', 'replace')}")


def imap_quote(value: str) -> bytes:
    """An IMAP string: quoted when it can be, a literal otherwise."""
    raw = value.encode("utf-8")
    if re.fullmatch(rb"[\x01-\x7f]*", raw) and b"\r" not in raw and b"\n" not in raw:
        return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{" + str(len(raw)).encode() + b"+}\r\n" + raw


class SaslClient:
    """The client side of PLAIN or LOGIN for the backend login (Dovecot's dsasl roles:
    the authentication id is the master user when there is one, else the user; the
    authorization id is always the user)."""

    def __init__(self, target: ProxyTarget) -> None:
        # A master user logs in on the user's behalf: only SASL can say so (PLAIN by default).
        self.mech = target.mech or "PLAIN"
        self.authid = (target.master or target.user).encode("utf-8", "surrogateescape")
        self.authzid = target.user.encode("utf-8", "surrogateescape")
        self.password = target.password.encode("utf-8", "surrogateescape")
        self.steps = 0

    def initial(self) -> bytes:
        """The initial response (LOGIN has none: it waits for the server's prompts)."""
        if self.mech == "PLAIN":
            self.steps = 1
            return self.authzid + b"\0" + self.authid + b"\0" + self.password
        return b""

    def step(self, challenge: bytes) -> bytes:
        """The answer to a server challenge (``+ <base64>``), already decoded."""
        self.steps += 1
        if self.mech == "PLAIN":
            return self.authzid + b"\0" + self.authid + b"\0" + self.password
        return self.authid if self.steps == 1 else self.password


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data) if data else b"="


def _challenge(line: bytes) -> bytes | None:
    """The decoded challenge of a ``+ <base64>`` line, None when it is not base64."""
    try:
        return base64.b64decode(line[2:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


class ImapBackendLogin(_LineMachine):
    """Log in to an IMAP backend on behalf of a client whose login command had ``client_tag``."""

    def __init__(self, target: ProxyTarget, client_tag: str, client: ClientFacts, *,
                 capability_sent: bool = False) -> None:
        super().__init__()
        self.target = target
        self.tag = client_tag.encode()
        # A client that asked CAPABILITY before login may ignore the OK's [CAPABILITY] code,
        # so it gets the list untagged (as Dovecot's proxy does).
        self.capability_sent = capability_sent
        self.client = client
        self.state = "banner"
        self.id_capable = False
        self.sasl_ir = False
        self.sasl = SaslClient(target) if target.mech or target.master else None

    def line(self, line: bytes) -> list[BackendEvent]:
        if self.state == "banner":
            if not line.startswith(b"* OK"):
                return self.finish(_invalid(line, "Invalid banner"))
            caps = re.search(rb"\[CAPABILITY ([^\]]*)\]", line)
            names = caps.group(1).upper().split() if caps is not None else []
            self.id_capable = b"ID" in names
            self.sasl_ir = b"SASL-IR" in names
            if self.target.starttls:
                self.state = "starttls"
                return [Send(b"S STARTTLS\r\n")]
            return self._after_banner()
        if self.state == "starttls":
            if line.startswith(b"* "):
                return []
            if line.startswith(b"S OK"):
                self.state = "tls"
                return [StartBackendTls()]
            return self.finish(BackendBroken(
                "Remote server sent invalid input: STARTTLS failed: "
                + line.decode("utf-8", "replace")))
        if line.startswith(b"+"):
            if self.sasl is None or self.state != "authenticate":
                return []  # a literal's continuation: nothing to answer
            challenge = _challenge(line)
            if challenge is None:
                return self.finish(BackendBroken(
                    "Server sent invalid base64 data in AUTHENTICATE response"))
            return [Send(_b64(self.sasl.step(challenge)) + b"\r\n")]
        if line.startswith(b"I "):
            if self.state == "id":  # proxy_nopipelining: the login waited for this
                return [Send(self._login_command())]
            return []
        if line.startswith(b"C ") or line.startswith(b"* ID "):
            return []  # answers to the CAPABILITY / ID we sent
        if line.startswith(b"* "):
            return []  # untagged data before the login answer: the client never asked for it
        if line.startswith(b"L OK"):
            caps = re.match(rb"L OK \[CAPABILITY ([^\]]*)\] ?", line)
            if caps is not None and self.capability_sent:
                return self.finish(LoggedIn(b"* CAPABILITY " + caps.group(1) + b"\r\n" + self.tag
                                            + b" OK " + line[caps.end():] + b"\r\n"))
            return self.finish(LoggedIn(self.tag + line[1:] + b"\r\n"))
        if line.startswith(b"L NO") or line.startswith(b"L BAD"):
            text = line.split(b" ", 2)[2] if line.count(b" ") >= 2 else b""
            return self.finish(LoginRefused(self.tag + line[1:] + b"\r\n",
                                            text.decode("utf-8", "replace")))
        return self.finish(_invalid(line, "Unexpected input"))

    def tls_started(self) -> list[BackendEvent]:
        self.state = "capability"
        # The banner's capabilities were pre-TLS; Dovecot's backends keep ID after STARTTLS.
        return self._after_banner()

    def _after_banner(self) -> list[BackendEvent]:
        out = b""
        if self.id_capable and not self.target.not_trusted:
            c = self.client
            out += (b'I ID ("x-session-id" ' + imap_quote(c.session)
                    + b' "x-originating-ip" ' + imap_quote(c.remote_ip)
                    + b' "x-originating-port" "' + str(c.remote_port).encode()
                    + b'" "x-connected-ip" ' + imap_quote(c.local_ip)
                    + b' "x-connected-port" "' + str(c.local_port).encode()
                    + b'" "x-proxy-ttl" "' + str(max(self.target.ttl - 1, 0)).encode()
                    + b'")\r\n')
            if self.target.nopipelining:
                self.state = "id"
                return [Send(out)]
        return [Send(out + self._login_command())]

    def _login_command(self) -> bytes:
        if self.sasl is None:
            self.state = "login"
            return (b"L LOGIN " + imap_quote(self.target.user) + b" "
                    + imap_quote(self.target.password) + b"\r\n")
        self.state = "authenticate"
        command = b"L AUTHENTICATE " + self.sasl.mech.encode()
        if self.sasl_ir:
            command += b" " + _b64(self.sasl.initial())
        return command + b"\r\n"


class Pop3BackendLogin(_LineMachine):
    """Log in to a POP3 backend: USER, then PASS once USER was accepted (as Dovecot does), or
    AUTH with ``proxy_mech`` (and for a master user)."""

    def __init__(self, target: ProxyTarget, client: ClientFacts) -> None:
        super().__init__()
        self.target = target
        self.client = client
        self.state = "banner"
        self.xclient = False
        self.sasl = SaslClient(target) if target.mech or target.master else None

    def line(self, line: bytes) -> list[BackendEvent]:
        if self.state == "banner":
            if not line.startswith(b"+OK"):
                return self.finish(_invalid(line, "Invalid banner"))
            self.xclient = line.startswith(b"+OK [XCLIENT]") and not self.target.not_trusted
            if self.target.starttls:
                self.state = "stls"
                return [Send(b"STLS\r\n")]
            return self._login()
        if self.state == "stls":
            if line.startswith(b"+OK"):
                self.state = "tls"
                return [StartBackendTls()]
            return self.finish(BackendBroken(
                "Remote server sent invalid input: STLS failed: "
                + line.decode("utf-8", "replace")))
        if self.state == "xclient":
            if not line.startswith(b"+OK"):
                return self.finish(_invalid(line, "XCLIENT failed"))
            if self.target.nopipelining:  # the login waited for this answer
                return [Send(self._login_command())]
            self.state = "user" if self.sasl is None else "auth"
            return []
        if line.startswith(b"+ ") and self.state == "auth" and self.sasl is not None:
            challenge = _challenge(line)
            if challenge is None:
                return self.finish(BackendBroken("Invalid base64 data in AUTH response"))
            return [Send(_b64(self.sasl.step(challenge)) + b"\r\n")]
        if not line.startswith(b"+OK"):
            if line.startswith(b"-ERR"):
                text = line[5:].decode("utf-8", "replace")
                return self.finish(LoginRefused(line + b"\r\n", text))
            return self.finish(_invalid(line, "Unexpected input"))
        if self.state == "user":
            self.state = "pass"
            return [Send(f"PASS {self.target.password}\r\n".encode("utf-8", "surrogateescape"))]
        return self.finish(LoggedIn(line + b"\r\n"))  # PASS or AUTH answered +OK

    def tls_started(self) -> list[BackendEvent]:
        return self._login()

    def _login(self) -> list[BackendEvent]:
        out = b""
        c = self.client
        if self.xclient:
            self.state = "xclient"
            out += (f"XCLIENT ADDR={c.remote_ip} PORT={c.remote_port} SESSION={c.session} "
                    f"TTL={max(self.target.ttl - 1, 0)}\r\n").encode()
            if self.target.nopipelining:
                return [Send(out)]
        login = self._login_command()
        if self.xclient:
            self.state = "xclient"  # the login's answer comes after XCLIENT's
        return [Send(out + login)]

    def _login_command(self) -> bytes:
        if self.sasl is None:
            self.state = "user"
            return f"USER {self.target.user}\r\n".encode("utf-8", "surrogateescape")
        self.state = "auth"
        return b"AUTH " + self.sasl.mech.encode() + b" " + _b64(self.sasl.initial()) + b"\r\n"


@dataclass
class _BackendRecord:
    proxying: int = 0
    since: float = 0.0
    disconnects: int = 0


class DisconnectSpreader:
    """``login_proxy_max_disconnect_delay``: when a backend drops many proxied clients at once
    (it died or restarted), their disconnections are spread over up to ``max_delay`` seconds
    so that they do not all reconnect in the same instant. Each second lets through
    ``ceil(clients / max_delay)`` disconnections; later ones wait for their turn."""

    def __init__(self, max_delay: float) -> None:
        self.max_delay = max_delay
        self.records: dict[tuple[str, int], _BackendRecord] = {}

    def started(self, backend: tuple[str, int]) -> None:
        self.records.setdefault(backend, _BackendRecord()).proxying += 1

    def ended(self, backend: tuple[str, int]) -> None:
        record = self.records.get(backend)
        if record is not None:
            record.proxying -= 1
            if record.proxying <= 0 and record.disconnects == 0:
                del self.records[backend]

    def delay(self, backend: tuple[str, int], now: float) -> float:
        """Seconds to keep this client before closing it (the backend closed first)."""
        record = self.records.get(backend)
        if self.max_delay <= 0 or record is None:
            return 0.0
        if record.disconnects == 0 or now - record.since > self.max_delay:
            record.since, record.disconnects = now, 0
        per_second = max(1, -(-(record.proxying + record.disconnects) // int(
            max(self.max_delay, 1))))
        record.disconnects += 1
        if record.disconnects <= per_second:
            return 0.0
        turn = record.since + (record.disconnects - 1) // per_second
        return min(max(0.0, turn - now), self.max_delay)
