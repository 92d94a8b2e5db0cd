"""What a pre-auth protocol dialogue asks the login server to do.

Every dialogue (POP3 now; IMAP and ManageSieve next) is sans-IO and speaks in these actions,
so the server that runs them — sockets, TLS, the auth daemon, the hand-off — is written once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    """Bytes to send to the client."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Authenticate:
    """Start SASL ``mechanism``; ``initial_response`` None means the client sent none."""

    mechanism: str
    initial_response: bytes | None


@dataclass(frozen=True, slots=True)
class AuthContinue:
    """The client's answer to a challenge, decoded."""

    response: bytes


@dataclass(frozen=True, slots=True)
class AuthCancel:
    """The client aborted the exchange (``*``) or sent garbage; tell the daemon."""


@dataclass(frozen=True, slots=True)
class StartTls:
    """The reply was sent; switch the transport to TLS and drop buffered plaintext."""


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close the connection; ``reason`` starts the log line (``Disconnected: <reason> (…)``)."""

    reason: str


Action = Reply | Authenticate | AuthContinue | AuthCancel | StartTls | Disconnect
