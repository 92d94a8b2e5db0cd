"""``coteadm who``, ``kick`` and ``penalty``: doveadm's anvil commands against cote's anvil.

cote's anvil answers ``CONNECT-DUMP`` with ``<ident> TAB <count> TAB <pid,pid,...>`` per
``service/ip/user`` ident and ``PENALTY-DUMP`` with ``<ip> TAB <penalty> TAB <last update>``
(see ``cote.master.anvil``); the tables printed are doveadm's.
"""

from __future__ import annotations

import fnmatch
import getopt
import ipaddress
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from cote.cli.adm_print import EXPAND, RIGHT, Output
from cote.mailproc.imap.hibernate import kick as hibernate_kick

EX_USAGE = 64
EX_NOTFOUND = 68
EX_TEMPFAIL = 75
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AnvilError(Exception):
    pass


def anvil_request(path: str, command: str) -> list[str]:
    """Send one dump command; the reply lines up to the empty line."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    try:
        sock.connect(path)
        sock.sendall(f"VERSION\tanvil\t1\t0\n{command}\n".encode())
        data = b""
        while not (data.endswith(b"\n\n") or data == b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as e:
        raise AnvilError(f"connect({path}) failed: {e.strerror or e}") from e
    finally:
        sock.close()
    lines = data.decode("utf-8", "replace").split("\n")
    out: list[str] = []
    for line in lines:
        if not line:
            break
        out.append(line)
    return out


@dataclass
class Conn:
    service: str
    ip: str
    user: str
    count: int
    pids: list[int]


def parse_dump(lines: list[str]) -> list[Conn]:
    conns: list[Conn] = []
    for line in lines:
        args = line.split("\t")
        if len(args) < 3 or "/" not in args[0] or not args[1].isdigit():
            sys.stderr.write(f"Error: Invalid input: {line}\n")
            continue
        service, _, rest = args[0].partition("/")
        ip, slash, user = rest.partition("/")
        if not slash:
            ip, user = "", rest
        pids = [int(p) for p in args[2].split(",") if p.isdigit()]
        conns.append(Conn(service, ip, user, int(args[1]), pids))
    return conns


@dataclass
class Filter:
    user: str | None = None
    net: Network | None = None

    def match(self, user: str, ips: Sequence[str]) -> bool:
        if self.user is not None and not fnmatch.fnmatchcase(user.lower(), self.user.lower()):
            return False
        if self.net is not None:
            for ip in ips:
                try:
                    if ipaddress.ip_address(ip) in self.net:
                        return True
                except ValueError:
                    continue
            return False
        return True


def _parse_net(text: str) -> Network | None:
    try:
        if "/" in text:
            return ipaddress.ip_network(text, strict=False)
        return ipaddress.ip_network(ipaddress.ip_address(text))
    except ValueError:
        return None


def parse_masks(masks: Sequence[str]) -> Filter | str:
    flt = Filter()
    for mask in masks:
        net = _parse_net(mask)
        if net is not None:
            if flt.net is not None:
                return "Multiple network masks not supported"
            flt.net = net
        else:
            if flt.user is not None:
                return "Multiple username masks not supported"
            flt.user = mask
    return flt


@dataclass
class _UserRow:
    user: str
    service: str
    count: int = 0
    pids: list[int] = field(default_factory=list)
    ips: list[str] = field(default_factory=list)


@dataclass
class _Query:
    """A who/kick command line taken apart, with anvil's connection dump."""

    flag: bool  # who -1 / kick -f
    filter: Filter
    conns: list[Conn]


def _query(command: str, args: Sequence[str], flag: str, base_dir: str, *,
           masks_required: bool = False) -> _Query | int:
    """``[-a anvil_path] [-<flag>] masks…``: the parsed query, or the exit code after
    saying what was wrong."""
    try:
        opts, masks = getopt.getopt(list(args), "a:" + flag)
    except getopt.GetoptError as e:
        sys.stderr.write(f"{command}: invalid option -- '{e.opt}'\n")
        return EX_USAGE
    path = os.path.join(base_dir, "anvil")
    flagged = False
    for opt, val in opts:
        if opt == "-a":
            path = val
        else:
            flagged = True
    if masks_required and not masks:
        sys.stderr.write("Error: user and/or ip[/bits] must be specified.\n")
        return EX_USAGE
    flt = parse_masks(masks)
    if isinstance(flt, str):
        sys.stderr.write(f"Error: {flt}\n")
        return EX_USAGE
    try:
        conns = parse_dump(anvil_request(path, "CONNECT-DUMP"))
    except AnvilError as e:
        sys.stderr.write(f"Fatal: {e}\n")
        return EX_TEMPFAIL
    return _Query(flagged, flt, conns)


def cmd_who(args: Sequence[str], base_dir: str, out: Output) -> int:
    query = _query("who", args, "1", base_dir)
    if isinstance(query, int):
        return query
    separate, flt, conns = query.flag, query.filter, query.conns
    printer = out.init("table")
    if separate:
        printer.header("username", "username", EXPAND)
        printer.header("service", "proto")
        printer.header("pid")
        printer.header("ip")
        for c in conns:
            if not flt.match(c.user, [c.ip]):
                continue
            # cote's dump counts connections per ident, not per process: give each process
            # its share, the rest to the first
            shares = {pid: 0 for pid in c.pids}
            for i in range(c.count):
                if c.pids:
                    shares[c.pids[i % len(c.pids)]] += 1
            for pid, n in shares.items():
                for _ in range(n):
                    printer.values(c.user, c.service, str(pid), c.ip)
        return 0
    rows: dict[tuple[str, str], _UserRow] = {}
    for c in conns:
        row = rows.setdefault((c.user, c.service), _UserRow(c.user, c.service))
        row.count += c.count
        if c.ip and c.ip not in row.ips:
            row.ips.append(c.ip)
        row.pids += [p for p in c.pids if p not in row.pids]
    printer.header("username", "username")
    printer.header("connections", "#", RIGHT)
    printer.header("service", "proto")
    printer.header("pids", "(pids)")
    printer.header("ips", "(ips)")
    for row in rows.values():
        if flt.match(row.user, row.ips):
            printer.values(row.user, str(row.count), row.service,
                           "(" + " ".join(str(p) for p in row.pids) + ")",
                           "(" + " ".join(row.ips) + ")")
    return 0


def cmd_kick(args: Sequence[str], base_dir: str, out: Output) -> int:
    query = _query("kick", args, "f", base_dir, masks_required=True)
    if isinstance(query, int):
        return query
    force, flt, conns = query.flag, query.filter, query.conns
    # pid -> {user: kick_me}
    pids: dict[int, dict[str, bool]] = {}
    targets: dict[int, list[tuple[str, str]]] = {}
    for c in conns:
        hit = flt.match(c.user, [c.ip])
        for pid in c.pids:
            users = pids.setdefault(pid, {})
            users[c.user] = users.get(c.user, False) or hit
            if hit:
                targets.setdefault(pid, []).append((c.user, c.ip))
    kicked: list[str] = []
    warn = False
    to_kill: list[int] = []
    for pid, users in pids.items():
        wanted = [u for u, k in users.items() if k]
        if not wanted:
            continue
        # imap-hibernate holds many users' clients: it closes just these (Dovecot's does
        # the same through its admin socket)
        if hibernate_kick(base_dir, pid, targets[pid]) is not None:
            kicked += wanted
            continue
        if len(wanted) < len(users) and not force:
            kicked += [u for u, k in users.items() if not k]
            warn = True
            continue
        to_kill.append(pid)
    if not warn:
        for pid in to_kill:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            except OSError as e:
                sys.stderr.write(f"kill({pid}, SIGTERM) failed: {e.strerror}\n")
                continue
            kicked += list(pids[pid])
    if not kicked:
        out.write("no users kicked\n")
        return EX_NOTFOUND
    # doveadm prints the names through its print stream, which reaches stdout before the
    # printf() lines around them: the same order here
    out.format("".join(u + " " for u in sorted(set(kicked))))
    if warn:
        out.write("warning: other connections would also be kicked from following users:\n")
    else:
        out.write("kicked connections from the following users:\n")
    out.write("\n")
    if warn:
        out.write("Use the '-f' option to enforce the disconnect.\n")
    return 0


def cmd_penalty(args: Sequence[str], base_dir: str, out: Output) -> int:
    try:
        opts, rest = getopt.getopt(list(args), "a:")
    except getopt.GetoptError as e:
        sys.stderr.write(f"penalty: invalid option -- '{e.opt}'\n")
        return EX_USAGE
    path = os.path.join(base_dir, "anvil")
    for _, val in opts:
        path = val
    net: Network | None = None
    if rest:
        net = _parse_net(rest[0])
        if net is None:
            sys.stderr.write(f"Fatal: Invalid IP mask: {rest[0]}\n")
            return EX_USAGE
    try:
        lines = anvil_request(path, "PENALTY-DUMP")
    except AnvilError as e:
        sys.stderr.write(f"Fatal: {e}\n")
        return EX_TEMPFAIL
    printer = out.init("table")
    printer.header("IP")
    printer.header("penalty")
    printer.header("last_penalty")
    printer.header("last_update")
    for line in lines:
        args3 = line.split("\t")
        if len(args3) < 3:
            sys.stderr.write(f"Error: Invalid input: {line}\n")
            continue
        ip, value, last = args3[0], args3[1], args3[-1]
        if net is not None:
            try:
                if ipaddress.ip_address(ip) not in net:
                    continue
            except ValueError:
                continue
        stamp = int(last) if last.isdigit() else 0
        printer.values(ip, value,
                       time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)),
                       time.strftime("%H:%M:%S", time.localtime(stamp)))
    return 0
