"""cote's auth-client codec, SASL mechanisms and password schemes glued in-process.

This is the least a daemon must do with them (no I/O, no delays, one passwd-like dict as
the passdb, no master users); the differential tests run it next to Dovecot's auth socket.
"""

from __future__ import annotations

import base64
import os
import time

from cote.auth import mechanisms as mech
from cote.auth import schemes
from cote.auth.protocol import auth_client as ac
from tests.auth.auth_socket import AuthClientBase


class InProcessAuthServer:
    def __init__(self, users: dict[str, str], mechanisms: list[str], *,
                 default_scheme: str = "PLAIN", cert_username: str | None = None,
                 nopassword: frozenset[str] = frozenset()) -> None:
        self.users = users
        self.nopassword = nopassword
        self.default_scheme = default_scheme
        self.infos = mech.advertised(mechanisms)
        self.conn = ac.ServerConnection(m.name for m in self.infos)
        self.spid, self.cuid = os.getpid(), 1
        self.start_time = time.time() - 1
        self.cert_username = cert_username
        self.requests: dict[int, tuple[mech.Mechanism, ac.AuthBegin]] = {}
        self.log: list[str] = []

    def greeting(self) -> bytes:
        return ac.ServerConnection.handshake(self.infos, spid=self.spid, cuid=self.cuid,
                                             cookie=os.urandom(16))

    def feed(self, data: bytes) -> bytes:
        out = []
        for event in self.conn.feed(data):
            if isinstance(event, ac.AuthBegin):
                context = mech.MechanismContext(
                    service=event.service, final_resp_ok="final-resp-ok" in event.flags,
                    server_pid=self.spid, connect_uid=self.cuid, start_time=self.start_time,
                    cert_username=event.params.get("cert_username", self.cert_username))
                m = mech.create(event.mechanism, context)
                self.requests[event.id] = (m, event)
                out.append(self.drive(event.id, m.start(event.initial_response)))
            elif isinstance(event, ac.AuthContinue):
                m, _ = self.requests[event.id]
                out.append(self.drive(event.id, m.respond(event.response)))
            elif isinstance(event, ac.AuthCancel):
                self.requests.pop(event.id, None)
            elif isinstance(event, ac.Reply):
                out.append(event.data)
            elif isinstance(event, ac.Disconnect):
                self.log.append(f"disconnect: {event.reason}")
                out.append(b"")
        return b"".join(out)

    def drive(self, request_id: int, step: mech.Step) -> bytes:
        m, _ = self.requests[request_id]
        while True:
            if isinstance(step, mech.Challenge):
                return self.conn.cont(request_id, step.data)
            if isinstance(step, mech.Success):
                if step.log is not None:
                    self.log.append(f"{m.name.lower()}({step.log[0]}): {step.log[1]}")
                fields: list[tuple[str, str | None]] = list(step.fields)
                if step.final is not None:
                    fields.append(("resp", base64.b64encode(step.final).decode()))
                del self.requests[request_id]
                return self.conn.ok(request_id, step.user, fields)
            if isinstance(step, mech.Failure):
                if step.log:
                    self.log.append(f"{m.name.lower()}({step.user or '?'}): {step.log}")
                del self.requests[request_id]
                return self.conn.fail(request_id, user=step.user, code=step.code)
            if step.authzid is not None:
                # No master passdbs here (nor in the oracle's config).
                self.log.append(f"{m.name.lower()}({step.user}): login user: "
                                "Master user login attempted without master passdbs")
                del self.requests[request_id]
                return self.conn.fail(request_id, user=step.user)
            stored = self.users.get(step.user)
            if isinstance(step, mech.VerifyPlain):
                if stored is None:
                    result = mech.PassdbResult.USER_UNKNOWN
                elif step.user in self.nopassword:
                    # Like passwd-file: nopassword only counts when the password is empty.
                    empty = stored.split("}", 1)[-1] == ""
                    result = (mech.PassdbResult.OK if empty
                              else mech.PassdbResult.PASSWORD_MISMATCH)
                else:
                    ok = schemes.verify(stored, step.password, user=step.user,
                                        default_scheme=self.default_scheme)
                    result = mech.PassdbResult.OK if ok else mech.PassdbResult.PASSWORD_MISMATCH
                step = m.verified(result)
            else:
                if stored is None:
                    step = m.credentials(mech.PassdbResult.USER_UNKNOWN, None)
                    continue
                try:
                    raw = schemes.credentials(stored, step.scheme, user=step.user,
                                              default_scheme=self.default_scheme)
                except schemes.SchemeError:
                    step = m.credentials(mech.PassdbResult.SCHEME_NOT_AVAILABLE, None)
                else:
                    step = m.credentials(mech.PassdbResult.OK, raw)


class InProcessAuthClient(AuthClientBase):
    def __init__(self, server: InProcessAuthServer) -> None:
        self.server = server
        self._greeting = server.greeting()
        super().__init__()

    def send(self, data: bytes) -> None:
        reply = self.server.feed(data)
        if self._greeting:
            reply, self._greeting = self._greeting + reply, b""
        self.pending += self.codec.feed(reply)

    def next_event(self) -> ac.ClientEvent:
        if not self.pending:
            return ac.Disconnect("no reply")
        return self.pending.pop(0)
