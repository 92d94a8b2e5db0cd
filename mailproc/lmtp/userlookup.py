"""The lmtp process's userdb lookups over one kept auth-master connection.

Connecting and doing the handshake for every RCPT was a fifth of an lmtp process's time under
load (py-spy, bench lmtp). The connection is kept between lookups; one the daemon closed
meanwhile (restart, idle timeout) is replaced and the lookup asked again once.
"""

from __future__ import annotations

from collections.abc import Mapping

from cote.auth.protocol.auth_master import ClientConnection
from cote.mailproc.userdb import MasterConnection, UserdbError, UserdbReply, UserNotFound


class UserLookups:
    def __init__(self, path: str) -> None:
        self.path = path
        self.conn: MasterConnection | None = None
        self.request_id = 0

    def user(self, name: str, params: Mapping[str, str]) -> UserdbReply:
        """USER lookup; raises UserNotFound or UserdbError like ``lookup_user``."""
        reused = self.conn is not None
        while True:
            if self.conn is None:
                self.conn = MasterConnection(self.path)
            self.request_id += 1
            try:
                return self.conn.ask(ClientConnection.user(self.request_id, name, params))
            except UserNotFound:
                raise
            except UserdbError:
                self.close()
                if not reused:
                    raise
                reused = False  # a kept connection may have gone stale: one fresh try

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
