"""The login process → mail process hand-off: one message with the client's socket attached.

After the auth daemon says OK, a login process connects to the mail service's socket (Dovecot's
layout: ``login/pop3``, ``login/imap`` under base_dir), sends one :class:`HandoffRequest` line
with the client fd as SCM_RIGHTS, and waits for one :class:`HandoffReply` line. The request
carries what the mail process needs to *verify* the login with the auth daemon (auth-master
``REQUEST`` with the auth pid, request id and cookie) — it trusts nothing else it is told —
plus the connection facts for logging and the bytes the client already pipelined.
This format is internal to cote (both ends ship together); it is versioned anyway.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field, fields

VERSION = 1
MAX_MESSAGE = 256 * 1024  # generous: pipelined bytes travel base64-encoded


class HandoffError(ValueError):
    """A malformed hand-off message."""


@dataclass(frozen=True, slots=True)
class HandoffRequest:
    auth_pid: int  # the auth daemon's SPID from the auth-client handshake
    auth_id: int  # the login process's auth request id (its "client id" for REQUEST)
    client_pid: int  # the login process's pid (its CPID)
    cookie: str  # the auth-client handshake COOKIE, hex
    user: str  # as the auth daemon returned it (the mail process re-checks via REQUEST)
    mechanism: str
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    session: str  # the session id shown in log lines (session=<...>)
    secured: bool
    tls: bool
    local_name: str = ""
    pipelined: bytes = b""  # client bytes read past the login command
    extra: dict[str, str] = field(default_factory=dict)  # auth reply fields worth passing on

    def encode(self) -> bytes:
        data = {name: getattr(self, name) for name in _REQUEST_FIELDS}
        data["pipelined"] = base64.b64encode(self.pipelined).decode("ascii")
        data["v"] = VERSION
        return json.dumps(data, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> HandoffRequest:
        try:
            data = json.loads(line)
            if not isinstance(data, dict) or data.pop("v", None) != VERSION:
                raise HandoffError("unsupported hand-off version")
            data["pipelined"] = base64.b64decode(data.get("pipelined", ""), validate=True)
            return cls(**data)
        except (ValueError, TypeError) as e:
            raise HandoffError(f"malformed hand-off request: {e}") from e


_REQUEST_FIELDS = tuple(f.name for f in fields(HandoffRequest))
"""(``dataclasses.asdict`` deep-copies; these are flat values and one flat dict.)"""


@dataclass(frozen=True, slots=True)
class HandoffReply:
    ok: bool
    mail_pid: int = 0  # for the login log line's mpid=
    reason: str = ""  # when not ok: shown to the client as a temporary failure
    # when not ok: this process cannot serve the user (it already became another uid);
    # the login process hands the client to the service again, which another process takes
    retry: bool = False

    def encode(self) -> bytes:
        data = {"ok": self.ok, "mail_pid": self.mail_pid, "reason": self.reason,
                "retry": self.retry}
        return json.dumps(data, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> HandoffReply:
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise HandoffError("hand-off reply is not an object")
            return cls(**data)
        except (ValueError, TypeError) as e:
            raise HandoffError(f"malformed hand-off reply: {e}") from e
