"""What every SASL mechanism state machine takes and returns (sans-IO).

A mechanism is fed the client's responses as bytes and answers with one step:

- ``Challenge(data)``: send ``CONT`` with ``data`` and wait for the next response;
- ``VerifyPlain(user, authzid, password)``: the daemon checks the password against the passdb
  and reports back with ``verified(result)``;
- ``LookupCredentials(user, authzid, scheme)``: the daemon fetches the passdb's credentials in
  that scheme (``cote.auth.schemes.credentials``) and reports back with
  ``credentials(result, data)``;
- ``Success(user, authzid, final, fields)`` or ``Failure(log, user, code, reason)``: done.

When a mechanism succeeds with final server data (SCRAM's ``v=``, DIGEST-MD5's ``rspauth=``)
and the client did not announce ``final-resp-ok``, the data goes out as a challenge first and
the success follows the client's (empty) answer, as Dovecot does; with ``final-resp-ok`` the
``Success`` carries it for ``OK … resp=``.

Malformed client input never raises out of a mechanism: it becomes a ``Failure`` whose
``log`` says why (what Dovecot logs with ``auth_verbose``); the client sees a bare ``FAIL``.
"""

from __future__ import annotations

import abc
import enum
import functools
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from cote.auth.protocol.auth_client import MechFlag

_A = TypeVar("_A")


class PassdbResult(enum.Enum):
    OK = "ok"
    PASSWORD_MISMATCH = "password_mismatch"  # noqa: S105 (a result name, not a password)
    USER_UNKNOWN = "user_unknown"
    USER_DISABLED = "user_disabled"
    PASS_EXPIRED = "pass_expired"  # noqa: S105
    INTERNAL_FAILURE = "internal_failure"
    SCHEME_NOT_AVAILABLE = "scheme_not_available"
    # A master user authenticated but may not log in as the wanted user (pass = yes and the
    # normal passdbs do not know that user): Dovecot's ``code=authz_fail``.
    AUTHZ_FAILED = "authz_failed"


@dataclass(frozen=True, slots=True)
class Challenge:
    data: bytes


@dataclass(frozen=True, slots=True)
class VerifyPlain:
    user: str
    authzid: str | None
    password: bytes


@dataclass(frozen=True, slots=True)
class LookupCredentials:
    user: str
    authzid: str | None
    scheme: str


@dataclass(frozen=True, slots=True)
class Success:
    """``log`` is an ``auth_verbose`` line as (name shown in the prefix, message), e.g.
    ANONYMOUS's ``anonymous(<trace>): login``."""

    user: str
    authzid: str | None = None
    final: bytes | None = None
    fields: tuple[tuple[str, str | None], ...] = ()
    log: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """``log`` is the reason for ``auth_verbose`` (empty: nothing to log), ``reason`` what the
    client is told (usually nothing)."""

    log: str
    user: str | None = None
    code: str | None = None
    reason: str | None = None


Step = Challenge | VerifyPlain | LookupCredentials | Success | Failure

# The auth-client FAIL code for each passdb result that has one.
FAIL_CODES = {
    PassdbResult.INTERNAL_FAILURE: "temp_fail",
    PassdbResult.USER_DISABLED: "user_disabled",
    PassdbResult.PASS_EXPIRED: "pass_expired",
    PassdbResult.AUTHZ_FAILED: "authz_fail",
}


@functools.cache
def _hostname() -> str:
    """Read once, as Dovecot does at start-up (a gethostname() per AUTH was 8% of the auth
    process's time in bench auth)."""
    return socket.gethostname()


@dataclass(slots=True)
class MechanismContext:
    """What the daemon knows about the request and its settings that mechanisms need."""

    service: str = "imap"
    final_resp_ok: bool = False
    hostname: str = field(default_factory=_hostname)      # CRAM-MD5 challenge
    realms: tuple[str, ...] = ()                          # auth_realms (DIGEST-MD5)
    anonymous_username: str = "anonymous"                 # auth_anonymous_username
    cert_username: str | None = None                      # EXTERNAL: from the client cert
    server_pid: int = field(default_factory=os.getpid)    # APOP challenge check
    connect_uid: int = 0                                  # APOP: CUID of this connection
    start_time: float = field(default_factory=time.time)  # APOP: process start


class Mechanism(abc.ABC):
    """Base of the SASL mechanism state machines; one instance per AUTH request."""

    name: ClassVar[str]
    flags: ClassVar[MechFlag] = MechFlag(0)

    def __init__(self, context: MechanismContext) -> None:
        self.context = context
        self.user: str | None = None
        self.authzid: str | None = None
        self.done = False
        self._expect = "response"  # response | verify | credentials | final | done
        self._pending: Success | None = None

    # -- entry points used by the daemon ---------------------------------------------------
    def start(self, initial: bytes | None) -> Step:
        """The AUTH line arrived; ``initial`` is its ``resp=`` (None when absent)."""
        return self._guard(self._initial, initial)

    def respond(self, data: bytes) -> Step:
        """A ``CONT`` from the client."""
        if self._expect == "final":
            assert self._pending is not None
            return self._finish(self._pending)
        if self._expect != "response":
            return self._finish(Failure("Unexpected continuation", self.user,
                                        reason="Unexpected continuation"))
        return self._guard(self._continue, data)

    def verified(self, result: PassdbResult) -> Step:
        """Outcome of a ``VerifyPlain``."""
        if self._expect != "verify":
            return self._finish(Failure("verify result without a request", self.user,
                                        code="temp_fail"))
        return self._guard(self._verified, result)

    def credentials(self, result: PassdbResult, data: bytes | None) -> Step:
        """Outcome of a ``LookupCredentials``: ``data`` are the raw credentials when OK."""
        if self._expect != "credentials":
            return self._finish(Failure("credentials without a request", self.user,
                                        code="temp_fail"))
        if result is not PassdbResult.OK or data is None:
            return self._finish(self.passdb_failure(result))
        return self._guard(self._credentials, data)

    # -- for subclasses ----------------------------------------------------------------------
    def _initial(self, data: bytes | None) -> Step:
        if data is None:
            return Challenge(b"")
        return self._continue(data)

    @abc.abstractmethod
    def _continue(self, data: bytes) -> Step:
        """The mechanism's handling of one client response."""

    def _verified(self, result: PassdbResult) -> Step:
        if result is PassdbResult.OK:
            return self.succeed()
        return self._finish(self.passdb_failure(result))

    def _credentials(self, data: bytes) -> Step:
        return self._finish(Failure("unexpected credentials", self.user, code="temp_fail"))

    def passdb_failure(self, result: PassdbResult) -> Failure:
        # The passdb logs why (Dovecot's mechanisms add no line of their own).
        return Failure("", self.user, code=FAIL_CODES.get(result))

    def fail(self, log: str) -> Failure:
        result = Failure(log, self.user)
        self._finish(result)
        return result

    def verify_plain(self, password: bytes) -> VerifyPlain:
        assert self.user is not None
        self._expect = "verify"
        return VerifyPlain(self.user, self.authzid, password)

    def lookup(self, scheme: str) -> LookupCredentials:
        assert self.user is not None
        self._expect = "credentials"
        return LookupCredentials(self.user, self.authzid, scheme)

    def succeed(self, final: bytes | None = None,
                fields: tuple[tuple[str, str | None], ...] = (),
                log: tuple[str, str] | None = None) -> Step:
        assert self.user is not None
        success = Success(self.user, self.authzid, None, fields, log)
        if final is not None:
            if not self.context.final_resp_ok:
                self._pending = success
                self._expect = "final"
                return Challenge(final)
            success = Success(self.user, self.authzid, final, fields, log)
        return self._finish(success)

    def set_user(self, user: str, authzid: str | None = None) -> Failure | None:
        """Record the authentication identity; an empty one fails, as in Dovecot."""
        self.user = user
        if not user:
            return self.fail("Empty username")
        self.authzid = authzid if authzid and authzid != user else None
        return None

    # -- plumbing ---------------------------------------------------------------------------
    def _finish(self, step: Step) -> Step:
        if isinstance(step, (Success, Failure)):
            self.done = True
            self._expect = "done"
        return step

    def _guard(self, method: Callable[[_A], Step], arg: _A) -> Step:
        try:
            step = method(arg)
        except (ValueError, UnicodeError, IndexError, KeyError) as e:
            return self._finish(Failure(f"invalid input: {e}", self.user))
        if isinstance(step, (Success, Failure)):
            return self._finish(step)
        if isinstance(step, Challenge) and self._expect != "final":
            self._expect = "response"
        return step
