"""Binding listeners as root before any privilege drop, reusing them across reloads.

inet listeners bind each ``address`` (or the global ``listen``: ``*`` = all IPv4, ``::`` = all
IPv6 with IPV6_V6ONLY so both can coexist); unix listeners are created with their ``mode``,
``user`` and ``group`` (a stale socket file is removed, a live one is an error); fifo listeners
are mkfifo'd and opened O_RDWR so they never see EOF. Sockets passed by systemd (LISTEN_FDS)
are matched to listeners by name or bound address and used instead of binding.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import socket
import stat
from dataclasses import dataclass

from cote.ipc import ListenerSocket
from cote.master.settings import ListenerSpec

BACKLOG = 511  # what a busy login service needs queued while processes start


class ListenerError(Exception):
    pass


@dataclass
class Bound:
    spec: ListenerSpec
    sock: socket.socket | None
    fd: int
    from_systemd: bool = False

    def handle(self) -> ListenerSocket:
        s = self.spec
        return ListenerSocket(name=s.name, kind=s.kind, sock=self.sock, fd=self.fd, ssl=s.ssl,
                              haproxy=s.haproxy, path=s.path, address=s.address, port=s.port)

    def close(self, unlink: bool = True) -> None:
        if self.sock is not None:
            self.sock.close()
        else:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        if unlink and self.spec.kind in ("unix", "fifo") and not self.from_systemd:
            with contextlib.suppress(OSError):
                os.unlink(self.spec.path)


def systemd_sockets(environ: dict[str, str] | None = None) -> list[tuple[str, socket.socket]]:
    """Sockets passed by systemd socket activation (LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES)."""
    env = os.environ if environ is None else environ
    if env.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    names = env.get("LISTEN_FDNAMES", "").split(":") if env.get("LISTEN_FDNAMES") else []
    out = []
    for i in range(count):
        fd = 3 + i
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
        except OSError:
            continue
        os.set_inheritable(fd, False)
        sock = socket.socket(fileno=fd)
        out.append((names[i] if i < len(names) else "", sock))
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(key, None)
    return out


def _inet_family_addr(address: str) -> tuple[socket.AddressFamily, str]:
    if address == "*":
        return socket.AF_INET, "0.0.0.0"
    if address in ("::", "[::]"):
        return socket.AF_INET6, "::"
    addr = address.strip("[]")
    return (socket.AF_INET6 if ":" in addr else socket.AF_INET), addr


def _matches(spec: ListenerSpec, name: str, sock: socket.socket) -> bool:
    if name and name == spec.name:
        return True
    try:
        local = sock.getsockname()
    except OSError:
        return False
    if spec.kind == "unix":
        return isinstance(local, str) and local == spec.path
    if spec.kind == "inet" and isinstance(local, tuple):
        family, addr = _inet_family_addr(spec.address)
        return sock.family == family and local[0] == addr and local[1] == spec.port
    return False


def _owner(user: str, group: str) -> tuple[int, int]:
    uid = gid = -1
    if user:
        uid = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
    if group:
        gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    return uid, gid


def _remove_stale_unix(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISSOCK(st.st_mode):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(0.5)
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody listening: stale
            return
        finally:
            probe.close()
        raise ListenerError(f"Socket already exists: {path}")
    os.unlink(path)


def apply_unix_permissions(spec: ListenerSpec, as_root: bool) -> None:
    os.chmod(spec.path, spec.mode)
    if as_root and (spec.user or spec.group):
        try:
            uid, gid = _owner(spec.user, spec.group)
        except KeyError as e:
            raise ListenerError(f"{spec.path}: unknown user/group: {e}") from None
        os.chown(spec.path, uid, gid)


def bind(spec: ListenerSpec, as_root: bool,
         activated: list[tuple[str, socket.socket]] | None = None) -> Bound:
    """Bind one listener. Raises ListenerError with Dovecot-like text."""
    for i, (name, sock) in enumerate(activated or []):
        if _matches(spec, name, sock):
            del activated[i]  # type: ignore[union-attr]
            sock.setblocking(True)
            return Bound(spec, sock, sock.fileno(), from_systemd=True)
    if spec.kind == "inet":
        family, addr = _inet_family_addr(spec.address)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if spec.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((addr, spec.port))
            sock.listen(BACKLOG)
        except OSError as e:
            sock.close()
            what = "Address already in use" if e.errno == errno.EADDRINUSE else e.strerror
            raise ListenerError(f"service listener {spec.name}: bind({addr}, {spec.port}) "
                                f"failed: {what}") from None
        return Bound(spec, sock, sock.fileno())
    parent = os.path.dirname(spec.path)
    if parent and not os.path.isdir(parent):
        raise ListenerError(f"{spec.kind}_listener {spec.path}: directory {parent} "
                            "does not exist")
    if spec.kind == "unix":
        _remove_stale_unix(spec.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o077)
        try:
            sock.bind(spec.path)
            sock.listen(BACKLOG)
        except OSError as e:
            sock.close()
            raise ListenerError(f"unix_listener: bind({spec.path}) failed: {e.strerror}") from None
        finally:
            os.umask(old_umask)
        apply_unix_permissions(spec, as_root)
        return Bound(spec, sock, sock.fileno())
    # fifo
    try:
        if os.path.lexists(spec.path) and not stat.S_ISFIFO(os.lstat(spec.path).st_mode):
            os.unlink(spec.path)
        if not os.path.exists(spec.path):
            os.mkfifo(spec.path, 0o600)
        apply_unix_permissions(spec, as_root)
        fd = os.open(spec.path, os.O_RDWR)
    except OSError as e:
        raise ListenerError(f"fifo_listener: mkfifo({spec.path}) failed: {e.strerror}") from None
    return Bound(spec, None, fd)


class ListenerSet:
    """All bound listeners of the master, keyed so a reload keeps sockets that did not change."""

    def __init__(self, as_root: bool) -> None:
        self.as_root = as_root
        self.bound: dict[tuple[str, str, int], Bound] = {}
        self.activated: list[tuple[str, socket.socket]] = []

    def prepare(self, specs: list[ListenerSpec]) -> dict[tuple[str, str, int], Bound]:
        """Bind what is new, reuse what exists; returns the new map (old ones not closed yet).
        On error nothing new stays bound."""
        fresh: dict[tuple[str, str, int], Bound] = {}
        new: list[Bound] = []
        try:
            for spec in specs:
                key = spec.key()
                if key in fresh:
                    continue
                old = self.bound.get(key)
                if old is not None:
                    if spec.kind == "unix" and spec != old.spec:
                        apply_unix_permissions(spec, self.as_root)
                    fresh[key] = Bound(spec, old.sock, old.fd, old.from_systemd)
                    continue
                b = bind(spec, self.as_root, self.activated)
                new.append(b)
                fresh[key] = b
        except (ListenerError, OSError):
            for b in new:
                b.close()
            raise
        return fresh

    def commit(self, fresh: dict[tuple[str, str, int], Bound]) -> None:
        for key, b in self.bound.items():
            if key not in fresh:
                b.close()
        self.bound = fresh

    def close_all(self) -> None:
        for b in self.bound.values():
            b.close()
        self.bound = {}
