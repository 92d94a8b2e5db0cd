"""The auth process's side of the auth-worker protocol (see :mod:`cote.auth.worker`): a pool
of connections to ``<base_dir>/auth-worker``, one request at a time per connection, at most
``auth_worker_max_count`` at once, each bounded by ``WORKER_TIMEOUT``.

The master starts worker processes on demand as connections arrive; a connection that fails
or times out is dropped (its worker may be stuck in PAM) and the request fails, which the
passdb reports as an internal failure (``temp_fail``).
"""

from __future__ import annotations

import asyncio
import itertools
import os

from cote import config
from cote.auth.protocol.escape import join_line, split_line
from cote.ipc import ENV_CONFIG

WORKER_TIMEOUT = 30.0
CONNECT_TIMEOUT = 5.0


class WorkerError(Exception):
    """The worker could not be reached or did not answer."""


_CONFIGURED: dict[str, tuple[str, int]] = {}  # "settings" -> (base_dir, max_count)


def configure(base_dir: str, max_count: int) -> None:
    """Called by the auth service at start: where the worker socket is, how many at once."""
    _CONFIGURED["settings"] = (base_dir, max(1, max_count))


def _settings() -> tuple[str, int]:
    """(base_dir, auth_worker_max_count): as configured, else from the config file."""
    if "settings" in _CONFIGURED:
        return _CONFIGURED["settings"]
    path = os.environ.get(ENV_CONFIG)
    cfg = config.load(path) if path else config.load()
    return str(cfg.get("base_dir")), max(1, int(str(cfg.get("auth_worker_max_count"))))


class WorkerClient:
    def __init__(self, *, max_requests: int = 0, path: str | None = None,
                 max_count: int | None = None) -> None:
        self.path = path
        self.max_count = max_count
        self.max_requests = max_requests
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.limit: asyncio.Semaphore | None = None
        self.ids = itertools.count(1)

    def _configure(self) -> asyncio.Semaphore:
        if self.limit is None:
            if self.path is None or self.max_count is None:
                base_dir, max_count = _settings()
                self.path = self.path or os.path.join(base_dir, "auth-worker")
                self.max_count = self.max_count or max_count
            self.limit = asyncio.Semaphore(self.max_count)
        return self.limit

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        """A connection, and whether it was reused (a reused one may have been recycled)."""
        while self.idle:
            reader, writer = self.idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer, True
            writer.close()
        assert self.path is not None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(self.path), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as e:
            raise WorkerError(f"auth-worker: connect({self.path}) failed: {e}") from e
        if self.max_requests:
            writer.write(f"MAX\t{self.max_requests}\n".encode())
        return reader, writer, False

    async def call(self, command: str, *args: str) -> list[str]:
        """Send one request; the reply's fields with the request id removed."""
        async with self._configure():
            for _attempt in (1, 2):
                reader, writer, reused = await self._connect()
                try:
                    return await self._exchange(reader, writer, [command, *args])
                except WorkerError:
                    if not reused:
                        raise
            raise WorkerError("auth-worker: no answer")

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        fields: list[str]) -> list[str]:
        rid = str(next(self.ids))
        ok = False
        try:
            writer.write(join_line([fields[0], rid, *fields[1:]]))
            line = await asyncio.wait_for(reader.readline(), WORKER_TIMEOUT)
            if not line.endswith(b"\n"):
                raise WorkerError("auth-worker: connection closed")
            reply = split_line(line[:-1])
            if len(reply) < 2 or reply[1] != rid:
                raise WorkerError(f"auth-worker: unexpected reply {reply[:2]}")
            ok = True
            return [reply[0], *reply[2:]]
        except (OSError, TimeoutError) as e:
            raise WorkerError(f"auth-worker: request failed: {e or 'timed out'}") from e
        finally:
            if ok:
                self.idle.append((reader, writer))
            else:
                writer.close()
