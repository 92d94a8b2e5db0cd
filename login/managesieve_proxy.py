"""Logging in to a ManageSieve backend for a proxied client (passdb ``proxy`` fields).

The backend's greeting is a capability block ending in ``OK``; with ``starttls`` the proxy
sends STARTTLS and reads the block again after the handshake; then AUTHENTICATE with the
client's credentials (PLAIN with an initial response, or ``proxy_mech`` LOGIN answering the
quoted base64 challenges). The backend's ``OK``/``NO`` goes to the client as the answer to
its own AUTHENTICATE, as Pigeonhole's proxy does.
"""

from __future__ import annotations

import base64
import binascii

from cote.login.proxy import (
    BackendBroken,
    BackendEvent,
    ClientFacts,
    LoggedIn,
    LoginRefused,
    ProxyTarget,
    SaslClient,
    Send,
    StartBackendTls,
    _LineMachine,
)


class ManageSieveBackendLogin(_LineMachine):
    def __init__(self, target: ProxyTarget, client: ClientFacts) -> None:
        super().__init__()
        self.target = target
        self.client = client
        self.state = "banner"
        self.sasl = SaslClient(target)

    def line(self, line: bytes) -> list[BackendEvent]:
        done = line[:3].upper()
        if self.state in ("banner", "capability"):
            if done.startswith(b"OK"):
                if self.state == "banner" and self.target.starttls:
                    self.state = "starttls"
                    return [Send(b"STARTTLS\r\n")]
                return self._authenticate()
            if line.startswith(b'"'):
                return []  # a capability line
            return self.finish(BackendBroken("Remote server sent invalid input: Invalid "
                                             "banner: " + line.decode("utf-8", "replace")))
        if self.state == "starttls":
            if done.startswith(b"OK"):
                self.state = "tls"
                return [StartBackendTls()]
            return self.finish(BackendBroken("Remote server sent invalid input: STARTTLS "
                                             "failed: " + line.decode("utf-8", "replace")))
        # authenticating
        if line.startswith(b'"'):
            try:
                challenge = base64.b64decode(line.strip(b'"'), validate=True)
            except (binascii.Error, ValueError):
                return self.finish(BackendBroken("Invalid base64 data in AUTHENTICATE "
                                                 "response"))
            answer = self.sasl.step(challenge)
            return [Send(b'"' + base64.b64encode(answer) + b'"\r\n')]
        if done.startswith(b"OK"):
            return self.finish(LoggedIn(line + b"\r\n"))
        if done.startswith(b"NO"):
            text = line[2:].strip().decode("utf-8", "replace")
            return self.finish(LoginRefused(line + b"\r\n", text.strip('"')))
        return self.finish(BackendBroken("Remote server sent invalid input: Unexpected "
                                         "input: " + line.decode("utf-8", "replace")))

    def tls_started(self) -> list[BackendEvent]:
        self.state = "capability"  # RFC 5804: the server sends its capabilities again
        return []

    def _authenticate(self) -> list[BackendEvent]:
        self.state = "auth"
        mech = self.sasl.mech.encode()
        initial = self.sasl.initial()
        if mech == b"PLAIN":
            return [Send(b'AUTHENTICATE "PLAIN" "' + base64.b64encode(initial) + b'"\r\n')]
        return [Send(b'AUTHENTICATE "' + mech + b'"\r\n')]
