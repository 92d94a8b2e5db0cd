"""A listening socket served by a thread, for fixtures that play a peer (a script service, a
relay) and record what they receive."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


class ThreadedListener:
    """Hands every accepted connection to ``handle`` in a daemon thread.

    ``close`` shuts the socket down and joins the thread before closing the descriptor. A
    thread left in ``accept`` on a closed descriptor would wake on the next socket that gets
    the same number and take its first connection away from the fixture that owns it."""

    def __init__(self, sock: socket.socket,
                 handle: Callable[[socket.socket], None]) -> None:
        self.sock = sock
        self._handle = handle
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._handle(conn)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._thread.join(timeout=10)
        self.sock.close()
