"""The log service: reads every service's log pipe and writes Dovecot-format lines.

The master creates one pipe per service; all processes of that service have its write end as
stderr. This process (``cote/log``, root, like Dovecot's log process) gets the read ends,
decodes records (cote.log wire format), and writes them to ``log_path`` / ``info_log_path`` /
``debug_log_path`` / syslog / ``/dev/stderr`` with ``log_timestamp``. The master sends pipes of
services added by a reload, and "reopen" on SIGUSR1, over a control socketpair.

:class:`LogSink` is also what the master uses for its own ``master: ...`` lines.
"""

from __future__ import annotations

import collections
import json
import os
import selectors
import socket
import syslog
import time
from dataclasses import dataclass
from typing import IO, Any

from cote.ipc import ServiceContext, recv_fds
from cote.log import decode_line

SYSLOG_FACILITIES = {
    "auth": syslog.LOG_AUTH, "authpriv": getattr(syslog, "LOG_AUTHPRIV", syslog.LOG_AUTH),
    "cron": syslog.LOG_CRON, "daemon": syslog.LOG_DAEMON, "ftp": getattr(syslog, "LOG_FTP", 88),
    "kern": syslog.LOG_KERN, "lpr": syslog.LOG_LPR, "mail": syslog.LOG_MAIL,
    "news": syslog.LOG_NEWS, "syslog": syslog.LOG_SYSLOG, "user": syslog.LOG_USER,
    "uucp": syslog.LOG_UUCP, **{f"local{i}": getattr(syslog, f"LOG_LOCAL{i}") for i in range(8)},
}
SYSLOG_PRIORITY = {"Debug": syslog.LOG_DEBUG, "Info": syslog.LOG_INFO,
                   "Warning": syslog.LOG_WARNING, "Error": syslog.LOG_ERR,
                   "Fatal": syslog.LOG_CRIT, "Panic": syslog.LOG_CRIT}


@dataclass(frozen=True)
class LogTargets:
    log_path: str = "syslog"
    info_log_path: str = ""
    debug_log_path: str = ""
    syslog_facility: str = "mail"
    log_timestamp: str = "%b %d %H:%M:%S "
    ident: str = "dovecot"

    @classmethod
    def from_settings(cls, ms: Any) -> LogTargets:
        return cls(ms.log_path, ms.info_log_path, ms.debug_log_path, ms.syslog_facility,
                   ms.log_timestamp, ms.instance_name or "dovecot")


class LogSink:
    """Writes log records to the configured destinations, Dovecot's line format."""

    def __init__(self, targets: LogTargets) -> None:
        self.targets = targets
        self._files: dict[str, IO[bytes]] = {}
        self._syslog_open = False
        self.errors: collections.deque[tuple[float, str, str]] = collections.deque(maxlen=1000)

    def path_for(self, level: str) -> str:
        t = self.targets
        if level == "Debug":
            return t.debug_log_path or t.info_log_path or t.log_path
        if level == "Info":
            return t.info_log_path or t.log_path
        return t.log_path

    def _file(self, path: str) -> IO[bytes] | None:
        f = self._files.get(path)
        if f is None:
            try:
                if path == "/dev/stderr":
                    f = os.fdopen(os.dup(2), "ab", buffering=0)
                else:
                    f = open(path, "ab", buffering=0)  # noqa: SIM115 - kept open, reopened on USR1
            except OSError as e:
                os.write(2, f"cote: Error: log: open({path}) failed: {e.strerror}\n".encode())
                return None
            self._files[path] = f
        return f

    def write(self, level: str, prefix: str, text: str) -> None:
        if level in ("Error", "Fatal", "Panic", "Warning"):
            self.errors.append((time.time(), prefix, f"{level}: {text}"))
        path = self.path_for(level)
        if path == "syslog":
            if not self._syslog_open:
                facility = SYSLOG_FACILITIES.get(self.targets.syslog_facility, syslog.LOG_MAIL)
                syslog.openlog(self.targets.ident, syslog.LOG_PID | syslog.LOG_NDELAY, facility)
                self._syslog_open = True
            shown = "" if level == "Info" else f"{level}: "
            syslog.syslog(SYSLOG_PRIORITY.get(level, syslog.LOG_INFO), f"{prefix}{shown}{text}")
            return
        f = self._file(path)
        if f is None:
            return
        stamp = time.strftime(self.targets.log_timestamp) if self.targets.log_timestamp else ""
        try:
            f.write(f"{stamp}{prefix}{level}: {text}\n".encode("utf-8", "replace"))
        except OSError:
            pass

    def open(self) -> None:
        """Open every configured log file now (before a process drops its privileges)."""
        for level in ("Error", "Info", "Debug"):
            path = self.path_for(level)
            if path and path != "syslog":
                self._file(path)

    def reopen(self) -> None:
        """SIGUSR1: close files so the next line opens the (possibly moved) path anew."""
        for f in self._files.values():
            try:
                f.close()
            except OSError:
                pass
        self._files.clear()

    def close(self) -> None:
        self.reopen()
        if self._syslog_open:
            syslog.closelog()
            self._syslog_open = False


class LineReader:
    """Splits one pipe's byte stream into lines, keeping a partial tail between reads."""

    __slots__ = ("buf", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        if not data:  # EOF: flush the tail
            tail, self.buf = self.buf, b""
            return [tail] if tail else []
        self.buf += data
        if b"\n" not in self.buf:
            if len(self.buf) > 65536:
                line, self.buf = self.buf, b""
                return [line]
            return []
        *lines, self.buf = self.buf.split(b"\n")
        return lines


def service_prefix(name: str) -> str:
    return f"{name}: "


def run(ctx: ServiceContext) -> int:
    """Entry point of the log service (forked by the master with the pipes' read ends)."""
    sink = LogSink(ctx.extra["log_targets"])
    sel = selectors.DefaultSelector()
    control: socket.socket = ctx.extra["log_control"]
    pipes: list[tuple[int, str]] = ctx.extra["log_pipes"]
    for fd, prefix in pipes:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ, LineReader(prefix))
    sel.register(control, selectors.EVENT_READ, "control")
    for lst in ctx.listeners:
        if lst.sock is not None:  # log-errors: dump recent errors and close
            lst.sock.setblocking(False)
            sel.register(lst.sock, selectors.EVENT_READ, "errors")
    master_alive = True
    while True:
        events = sel.select(timeout=None if master_alive else 0.3)
        if not master_alive and not events:
            break  # master gone and nothing more to read (our own stderr never reaches EOF)
        for key, _ in events:
            data = key.data
            if data == "control":
                try:
                    msg, fds = recv_fds(control, 4096, 16)
                except OSError:
                    msg, fds = b"", []
                if not msg:
                    sel.unregister(control)
                    master_alive = False
                    continue
                for line in msg.decode().splitlines():
                    cmd, _, arg = line.partition("\t")
                    if cmd == "REOPEN":
                        sink.reopen()
                    elif cmd == "TARGETS":
                        sink.close()
                        sink = LogSink(LogTargets(**json.loads(arg)))
                    elif cmd == "ADD" and fds:
                        fd = fds.pop(0)
                        os.set_blocking(fd, False)
                        sel.register(fd, selectors.EVENT_READ, LineReader(arg))
                for fd in fds:
                    os.close(fd)
            elif data == "errors":
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    conn, _ = sock.accept()
                except OSError:
                    continue
                with conn:
                    conn.setblocking(True)
                    conn.settimeout(2)
                    dump = "".join(f"{int(t)}\t{p}\t{x}\n" for t, p, x in sink.errors)
                    try:
                        conn.sendall(dump.encode("utf-8", "replace"))
                    except OSError:
                        pass
            else:
                assert isinstance(data, LineReader)
                fd = key.fd
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                for raw in data.feed(chunk):
                    if raw:
                        level, prefix, text = decode_line(raw, data.prefix)
                        sink.write(level, prefix, text)
                if not chunk:
                    sel.unregister(fd)
                    os.close(fd)
    sink.close()
    return 0
