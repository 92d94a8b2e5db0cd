"""The master supervising real processes: users, titles, chroot, replacement, throttling,
vsz_limit, log reopen, reload (new port, old clients kept; broken config ignored) and a clean
stop. One master per module (per xdist worker); each test works from whatever state earlier
tests of the same worker left (xdist keeps file order within a worker), and the TERM test,
which ends the master, comes last."""

from __future__ import annotations

import grp
import os
import pwd
import re
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cote.master import registry
from tests.master.conftest import (
    ECHO_PROG,
    PYTHON,
    ROOT,
    VSZ_PROG,
    MasterServer,
    alive,
    connect,
    free_port,
    proc_title,
    proc_uid,
    recv_line,
    write_prog,
)

pytestmark = pytest.mark.root
NOBODY = pwd.getpwnam("nobody").pw_uid


def make_conf(d: Path, echo_port: int, vsz_port: int) -> str:
    return f"""\
base_dir = {d}/run
log_path = {d}/cote.log
protocols = imap
listen = 127.0.0.1
director_servers = 10.0.0.1
import_environment = TZ COTE_TEST_VAR=set-by-config
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service echo {{
  executable = {d}/echo.py
  user = nobody
  group = mail
  extra_groups = tty
  client_limit = 1
  inet_listener echo {{
    port = {echo_port}
  }}
}}
service qw {{
  executable = script {d}/qw.sh
  user = nobody
  process_min_avail = 2
  unix_listener qw {{
    mode = 0666
  }}
}}
service idler {{
  executable = script /bin/true
  idle_kill = 1 secs
  unix_listener idler {{
    mode = 0600
  }}
}}
service burst {{
  executable = script {d}/burst.sh
  unix_listener burst {{
    mode = 0600
  }}
}}
service quickdie {{
  executable = /bin/false
  process_min_avail = 1
}}
service vsz {{
  executable = {d}/vsz.py
  vsz_limit = 64M
  inet_listener vsz {{
    port = {vsz_port}
  }}
}}
"""


@pytest.fixture(scope="module")
def master(workdir: Path) -> Iterator[MasterServer]:
    write_prog(workdir, "echo.py", ECHO_PROG)
    write_prog(workdir, "vsz.py", VSZ_PROG)
    out = workdir / "out"
    out.mkdir()
    out.chmod(0o777)
    write_prog(workdir, "qw.sh", f'#!/bin/sh\nid -u > {out}/qw.uid\nenv > {out}/qw.env\n'
                                 'echo "qw ran $*" >&2\n')
    write_prog(workdir, "burst.sh", "#!/bin/sh\nseq 1 3000 | sed 's/^/burst line /' >&2\n")
    ports = {"echo": free_port(), "vsz": free_port()}
    m = MasterServer(workdir, make_conf(workdir, ports["echo"], ports["vsz"]))
    m.ports = ports  # type: ignore[attr-defined]
    m.start()
    yield m
    m.stop()


def run_script(m: MasterServer, *args: str, service: str = "qw") -> bytes:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(str(m.base_dir / service))
    s.sendall("\t".join(args).encode() + b"\n\n")
    s.shutdown(socket.SHUT_WR)
    reply = recv_line(s)
    s.close()
    return reply


def test_base_dir_layout_matches_dovecot(master: MasterServer) -> None:
    base = master.base_dir
    login_gid = pwd.getpwnam("dovenull").pw_gid
    for name in ("login", "token-login"):
        st = os.stat(base / name)
        assert stat.S_IMODE(st.st_mode) == 0o750 and st.st_uid == 0 and st.st_gid == login_gid
    assert stat.S_IMODE(os.stat(base).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(base / "empty").st_mode) == 0o755
    pid_st = os.stat(base / "master.pid")
    assert stat.S_IMODE(pid_st.st_mode) == 0o600
    assert int((base / "master.pid").read_text()) == master.pid
    for sock, mode in (("master", 0o600), ("qw", 0o666), ("anvil", 0o600),
                       ("anvil-auth-penalty", 0o600)):
        st = os.stat(base / sock)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == mode, sock
    assert os.readlink(base / "dovecot.conf") == str(master.conf_path)


def test_start_up_is_logged_with_dovecot_prefixes(master: MasterServer) -> None:
    log = master.log()
    assert re.search(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d master: Info: cote v\S+ starting up for imap$",
                     log, re.M)
    # Built-ins whose implementation does not exist (yet) are announced once, never faked.
    for name in ("imap-login", "imap", "auth", "auth-worker"):
        try:
            registry.resolve((name,) if name != "auth-worker" else ("auth", "-w"))
        except registry.NotImplementedYet:
            line = f"master: Warning: service {name}: not implemented yet, not started"
            assert log.count(line) == 1, line
        except registry.ImplementationError:  # a broken one: an error, the rest still runs
            assert re.search(rf"master: Error: service\({name}\): .* - not started$", log, re.M)
        else:
            assert f"service {name}: not implemented yet" not in log
    # Config.warnings (settings Dovecot has and cote does not implement) are logged
    assert re.search(r"master: Warning: .*director_servers.*not implemented", log)


def test_processes_run_as_configured_users_with_titles(master: MasterServer) -> None:
    s = connect(master.ports["echo"])  # type: ignore[attr-defined]
    hello = recv_line(s).decode()
    s.sendall(b"x\n")
    assert recv_line(s) == b"echo x\n"
    s.close()
    assert hello.startswith(f"hello uid={NOBODY} ")
    mail_gid, tty_gid = grp.getgrnam("mail").gr_gid, grp.getgrnam("tty").gr_gid
    assert f" gid={mail_gid} " in hello  # group = mail
    groups = {int(g) for g in hello.split("groups=")[1].split(",")}
    assert groups == {mail_gid, tty_gid}  # the group plus extra_groups, nothing else
    master.wait_log(r"^.* echo: Error: echo started uid=65534 listeners=echo$")
    assert run_script(master, "a1", "b2") == b"+\n"
    assert (master.dir / "out" / "qw.uid").read_text().strip() == str(NOBODY)
    # children see import_environment only, not the master's environment
    env = dict(line.split("=", 1) for line in
               (master.dir / "out" / "qw.env").read_text().splitlines() if "=" in line)
    assert env.get("COTE_TEST_VAR") == "set-by-config"
    assert "HOME" not in env and "PYTEST_CURRENT_TEST" not in env
    master.wait_log(r"qw: Error: qw ran a1 b2$")
    # initialized = it has reported on the status channel, which it does after its title is set
    procs = {p["service"]: p for p in master.processes() if p["initialized"]}
    assert proc_title(procs["qw"]["pid"]) == "cote/qw"
    assert proc_uid(procs["qw"]["pid"]) == NOBODY
    assert proc_title(procs["anvil"]["pid"]) == "cote/anvil"
    assert proc_uid(procs["anvil"]["pid"]) == pwd.getpwnam("dovecot").pw_uid
    assert proc_title(procs["log"]["pid"]) == "cote/log"
    assert proc_uid(procs["log"]["pid"]) == 0


def test_python_service_processes_get_their_own_anvil_connection(master: MasterServer) -> None:
    # Each Python service process (the qw script processes, and any warm login spares) is
    # handed a connection to anvil made by the master; anvil reports one client per process.
    assert run_script(master, "anvil-check") == b"+\n"
    def anvil_clients() -> tuple[int, int]:
        procs = master.processes()
        # Every process of a Python service; the exec'd programs (echo, quickdie, vsz) and
        # anvil/log themselves have none.
        python = sum(1 for p in procs
                     if p["service"] not in ("anvil", "log", "echo", "quickdie", "vsz"))
        anvil = next(p for p in procs if p["service"] == "anvil")
        return python, anvil["client_limit"] - anvil["available_count"]

    def settled() -> tuple[int, int] | None:
        qw, clients = anvil_clients()
        return (qw, clients) if qw and qw == clients else None

    qw, clients = master.wait_for(settled, what="anvil clients == qw processes")
    assert qw >= 1 and clients == qw


def test_idle_processes_are_killed_after_idle_kill(master: MasterServer) -> None:
    assert run_script(master, service="idler") == b"+\n"
    pids = [p["pid"] for p in master.processes("idler")]
    assert pids
    master.wait_for(lambda: not master.processes("idler"), timeout=6, what="idle kill")
    for pid in pids:
        assert not alive(pid)
    assert "service(idler)" not in master.log()  # a clean, expected exit


def test_log_errors_socket_dumps_recent_errors_and_master_title(master: MasterServer) -> None:
    assert run_script(master, "for-log-errors") == b"+\n"
    master.wait_log(r"qw: Error: qw ran for-log-errors$")
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(str(master.base_dir / "log-errors"))
    dump = b""
    while chunk := s.recv(65536):
        dump += chunk
    s.close()
    rows = [line.split("\t") for line in dump.decode().splitlines()]
    assert ["qw: ", "Error: qw ran for-log-errors"] in [r[1:] for r in rows]
    assert all(r[0].isdigit() for r in rows)
    out = subprocess.run([PYTHON, "-m", "cote.cli.adm", "-c", str(master.conf_path), "log",
                          "errors"], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert re.search(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d qw: Error: qw ran for-log-errors$", out, re.M)
    assert proc_title(master.pid) == f"cote -F -c {master.conf_path}"


def test_a_burst_of_log_lines_arrives_complete_and_in_order(master: MasterServer) -> None:
    assert run_script(master, service="burst") == b"+\n"
    expected = [f"burst line {i}" for i in range(1, 3001)]

    def lines() -> list[str] | None:
        got = re.findall(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d burst: Error: (burst line \d+)$",
                         master.log(), re.M)
        return got if len(got) >= 3000 else None

    assert master.wait_for(lines, timeout=20, what="3000 burst lines") == expected


def test_process_min_avail_processes_are_kept_ready(master: MasterServer) -> None:
    ready = master.wait_for(lambda: [p for p in master.processes("qw") if p["initialized"]
                                     and p["available_count"] > 0][1:] or None,
                            what="two ready qw processes")
    assert ready
    victim = master.processes("qw")[0]["pid"]
    os.kill(victim, signal.SIGKILL)  # one gone: the master forks a replacement
    master.wait_for(lambda: len([p for p in master.processes("qw")
                                 if p["pid"] != victim and p["available_count"] > 0]) >= 2,
                    what="qw back to two ready processes")


def test_chroot_is_honoured(master: MasterServer) -> None:
    anvil = master.processes("anvil")[0]["pid"]
    assert os.readlink(f"/proc/{anvil}/root") == str(master.base_dir / "empty")


def anvil_session(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(str(path))
    s.sendall(b"VERSION\tanvil\t1\t0\n")
    return s


def test_anvil_counts_connections_and_penalties(master: MasterServer) -> None:
    a = anvil_session(master.base_dir / "anvil")
    a.sendall(b"CONNECT\t100\timap/10.0.0.1/u1\nCONNECT\t101\timap/10.0.0.1/u1\n"
              b"LOOKUP\timap/10.0.0.1/u1\n")
    assert recv_line(a) == b"2\n"
    a.sendall(b"DISCONNECT\t100\timap/10.0.0.1/u1\nLOOKUP\timap/10.0.0.1/u1\n")
    assert recv_line(a) == b"1\n"
    p = anvil_session(master.base_dir / "anvil-auth-penalty")
    p.sendall(b"PENALTY-GET\t10.0.0.9\n")
    assert recv_line(p) == b"0\t0\n"
    p.sendall(b"PENALTY-INC\t10.0.0.9\t1234\t1\nPENALTY-INC\t10.0.0.9\t1234\t2\n"
              b"PENALTY-GET\t10.0.0.9\n")
    value, last = recv_line(p).decode().split("\t")
    assert value == "1" and abs(int(last) - time.time()) < 5  # same checksum counted once
    # a closed connection takes its registrations with it (a dead login process)
    a.close()
    p.sendall(b"LOOKUP\timap/10.0.0.1/u1\n")
    deadline = time.monotonic() + 5
    while recv_line(p) != b"0\n":
        assert time.monotonic() < deadline
        time.sleep(0.05)
        p.sendall(b"LOOKUP\timap/10.0.0.1/u1\n")
    p.sendall(b"BOGUS\n")
    assert recv_line(p) == b""  # protocol error: disconnected, logged
    master.wait_log(r"anvil: Error: anvil client: Unknown command")
    p.close()


def test_killed_child_is_reaped_and_replaced(master: MasterServer) -> None:
    old = master.processes("anvil")[0]["pid"]
    os.kill(old, signal.SIGKILL)
    master.wait_log(rf"master: Error: service\(anvil\): child {old} killed with signal 9$")
    new = master.wait_for(lambda: [p["pid"] for p in master.processes("anvil")
                                   if p["pid"] != old and p["initialized"]], what="new anvil")
    assert proc_title(new[0]) == "cote/anvil"
    a = anvil_session(master.base_dir / "anvil")
    a.sendall(b"LOOKUP\tx\n")
    assert recv_line(a) == b"0\n"
    a.close()


def test_killed_log_service_is_replaced_and_logging_goes_on(master: MasterServer) -> None:
    old = master.processes("log")[0]["pid"]
    os.kill(old, signal.SIGKILL)
    master.wait_for(lambda: [p for p in master.processes("log") if p["pid"] != old],
                    what="new log process")
    assert run_script(master, "after-log-restart") == b"+\n"
    master.wait_log(r"qw: Error: qw ran after-log-restart$")
    master.wait_log(rf"master: Error: service\(log\): child {old} killed with signal 9$")


def test_failing_service_is_throttled_and_master_stays_up(master: MasterServer) -> None:
    master.wait_log(r"quickdie: Fatal: master: service\(quickdie\): child \d+ returned error 1$")
    master.wait_log(r"master: Error: service\(quickdie\): command startup failed, "
                    r"throttling for 2\.000 secs$")
    master.wait_log(r"throttling for 4\.000 secs$", timeout=15)
    assert alive(master.pid)
    status = {s["name"]: s for s in master.control("service-status")["services"]}
    assert status["quickdie"]["process_count"] <= 1


def test_vsz_limit_kills_the_process_and_says_why(master: MasterServer) -> None:
    s = connect(master.ports["vsz"])  # type: ignore[attr-defined]
    assert recv_line(s) == b""  # the process died instead of answering
    s.close()
    master.wait_log(r"vsz: Error: vsz test: MemoryError$")
    master.wait_log(r"service\(vsz\): child \d+ returned error 83 \(Out of memory \(service vsz "
                    r"\{ vsz_limit=64 MB \}, you may need to increase it\)")


def test_usr1_reopens_log_files(master: MasterServer) -> None:
    moved = master.dir / "cote.log.1"
    os.rename(master.log_path, moved)
    master.signal(signal.SIGUSR1)
    time.sleep(0.3)
    assert run_script(master, "after-usr1") == b"+\n"
    master.wait_log(r"qw: Error: qw ran after-usr1$")
    assert "after-usr1" not in moved.read_text()


def test_hup_serves_new_port_and_keeps_old_clients(master: MasterServer) -> None:
    old_port = master.ports["echo"]  # type: ignore[attr-defined]
    old_client = connect(old_port)
    old_hello = recv_line(old_client)
    assert old_hello.startswith(b"hello")
    new_port = free_port()
    master.conf_path.write_text(make_conf(master.dir, new_port,
                                          master.ports["vsz"]))  # type: ignore[attr-defined]
    start = len(master.log())
    master.signal(signal.SIGHUP)
    master.wait_log(r"master: Warning: SIGHUP received - reloading configuration", start=start)
    new_client = master.wait_for(lambda: _try_connect(new_port), what="new port")
    new_hello = recv_line(new_client)
    assert new_hello.startswith(b"hello uid=65534") and new_hello != old_hello
    new_client.sendall(b"new\n")
    assert recv_line(new_client) == b"echo new\n"
    new_client.close()
    # the old client was not cut: its process finishes it
    old_client.sendall(b"old\n")
    assert recv_line(old_client) == b"echo old\n"
    old_client.close()
    master.wait_for(lambda: _try_connect(old_port) is None, what="old port closed")
    master.ports["echo"] = new_port  # type: ignore[attr-defined]


def _try_connect(port: int) -> socket.socket | None:
    try:
        return connect(port, timeout=1)
    except OSError:
        return None


def test_hup_with_broken_config_keeps_old_one(master: MasterServer) -> None:
    good = master.conf_path.read_text()
    master.conf_path.write_text(good + "service broken {\n  process_limit = lots\n")
    start = len(master.log())
    master.signal(signal.SIGHUP)
    master.wait_log(r"master: Error: .*configuration file", start=start)
    master.wait_log(r"master: Warning: Configuration not reloaded, old configuration kept",
                    start=start)
    s = connect(master.ports["echo"])  # type: ignore[attr-defined]
    assert recv_line(s).startswith(b"hello")
    s.close()
    master.conf_path.write_text(good)


def test_coteadm_service_and_process_status(master: MasterServer) -> None:
    out = subprocess.run([PYTHON, "-m", "cote.cli.adm", "-c", str(master.conf_path), "service",
                          "status"], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["name", "process_count", "process_avail"]
    names = {line.split()[0] for line in lines[1:]}
    assert {"anvil", "log", "echo", "qw", "vsz", "quickdie", "idler"} <= names
    out = subprocess.run([PYTHON, "-m", "cote.cli.adm", "-c", str(master.conf_path), "process",
                          "status", "anvil"], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout
    rows = out.splitlines()[1:]
    assert len(rows) == 1 and rows[0].split()[0] == "anvil"
    assert int(rows[0].split()[1]) == master.processes("anvil")[0]["pid"]


def test_term_stops_every_process_and_removes_sockets(master: MasterServer) -> None:
    assert run_script(master, "before-term") == b"+\n"  # at least log, anvil and qw run
    pids = [p["pid"] for p in master.processes()]
    assert len(pids) >= 3
    port = master.ports["echo"]  # type: ignore[attr-defined]
    assert master.proc is not None
    master.proc.send_signal(signal.SIGTERM)
    assert master.proc.wait(10) == 0
    for pid in pids:
        assert not alive(pid), pid
    leftovers = [p.name for p in master.base_dir.iterdir()
                 if stat.S_ISSOCK(p.lstat().st_mode) or p.is_fifo()]
    assert leftovers == []
    assert not (master.base_dir / "master.pid").exists()
    assert _try_connect(port) is None
    master.wait_log(r"master: Warning: Killed with signal 15$")
    master.wait_log(r"master: Info: cote shutting down$")
