"""The ``script`` service: ``executable = script /path/to/prog [args]`` (quota-warning etc.).

A process of the service accepts a connection on its listener, reads one request and runs the
program with the configured arguments plus the request's, as the service's user, with the
connection's remaining data on stdin; stdout/stderr go to the log. Request (cote's framing, in
the spirit of Dovecot's script protocol)::

    VERSION \\t script \\t 4 \\t 0 \\n        (optional)
    [noreply \\n]                           (optional: no result line is sent back)
    <arg> [\\t <arg> ...] \\n                 (any number of lines; tabs separate arguments)
    \\n                                     (end of arguments; anything after is stdin)

Reply: ``+\\n`` when the program exited 0, ``-\\n`` otherwise. Without any request line (the
client just connects and closes) the program runs with the configured arguments only.
"""

from __future__ import annotations

import os
import selectors
import socket
import subprocess

from cote.ipc import ServiceContext

REQUEST_TIMEOUT = 10.0
MAX_REQUEST = 65536


def program_args(executable: list[str]) -> list[str]:
    """``["script", "-p", "/x.sh", "a"]`` -> ``["/x.sh", "a"]`` (options of script dropped)."""
    args = executable[1:]
    while args and args[0].startswith("-"):
        args = args[1:]
    return args


def parse_request(data: bytes) -> tuple[list[str], bool, bytes] | None:
    """(extra args, noreply, stdin data) once the request is complete, else None."""
    end = data.find(b"\n\n")
    if end < 0:
        if data.startswith(b"\n"):
            end = -1
        else:
            return None
    head, body = (b"", data[1:]) if end == -1 else (data[:end], data[end + 2:])
    args: list[str] = []
    noreply = False
    for line in head.decode("utf-8", "replace").split("\n"):
        if not line or line.startswith("VERSION\tscript\t"):
            continue
        if line == "noreply" and not args:
            noreply = True
            continue
        args.extend(line.split("\t"))
    return args, noreply, body


def _serve(ctx: ServiceContext, conn: socket.socket, base: list[str]) -> None:
    conn.settimeout(REQUEST_TIMEOUT)
    data = b""
    request: tuple[list[str], bool, bytes] | None = None
    try:
        while request is None and len(data) < MAX_REQUEST:
            chunk = conn.recv(65536)
            if not chunk:
                request = parse_request(data + b"\n\n") if data else ([], True, b"")
                break
            data += chunk
            request = parse_request(data)
    except OSError:
        request = parse_request(data + b"\n\n") if data else ([], True, b"")
    if request is None:
        ctx.log.error("script: request too long")
        return
    args, noreply, stdin = request
    try:
        env = ctx.extra.get("environment")
        proc = subprocess.run([*base, *args], input=stdin, stdout=2, stderr=2, env=env,
                              timeout=300, check=False)
        ok = proc.returncode == 0
        if not ok:
            ctx.log.error(f"{base[0]}: exited with status {proc.returncode}")
    except (OSError, subprocess.TimeoutExpired) as e:
        ctx.log.error(f"{base[0]}: {e}")
        ok = False
    if not noreply:
        try:
            conn.sendall(b"+\n" if ok else b"-\n")
        except OSError:
            pass


def run(ctx: ServiceContext) -> int:
    base = program_args(ctx.executable)
    if not base:
        ctx.log.fatal("executable = script needs a program path")
        return 89
    sel = selectors.DefaultSelector()
    for lst in ctx.listeners:
        if lst.sock is not None:
            lst.sock.setblocking(False)
            sel.register(lst.sock, selectors.EVENT_READ, lst)
    sel.register(ctx.master_death_fd, selectors.EVENT_READ, None)
    ctx.on_stop_accepting(lambda: None)
    while not ctx.should_exit():
        for key, _ in sel.select():
            if key.data is None:
                return 0
            assert isinstance(key.fileobj, socket.socket)
            try:
                conn, _ = key.fileobj.accept()
            except OSError:
                continue
            ctx.client_connected()
            ctx.status.report(0)  # one request at a time: busy whatever client_limit says
            with conn:
                conn.setblocking(True)
                _serve(ctx, conn, base)
            ctx.client_disconnected()
            if ctx.should_exit():
                break
    os.close(ctx.master_death_fd)
    return 0
