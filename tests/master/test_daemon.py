"""Starting and controlling ``cote`` like ``dovecot``: daemonising, the pid file, stop/reload,
-n/-a/--version, systemd readiness and socket activation, and a run as a non-root user."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.master.conftest import (
    ECHO_PROG,
    PYTHON,
    ROOT,
    MasterServer,
    alive,
    connect,
    free_port,
    proc_title,
    recv_line,
    write_prog,
)
from tests.support.env import chown_tree, mail_user, remove_dir, server_dir

pytestmark = pytest.mark.root


def conf_text(d: Path, port: int, extra: str = "") -> str:
    return f"""\
base_dir = {d}/run
log_path = {d}/cote.log
protocols =
listen = 127.0.0.1
service echo {{
  executable = {d}/echo.py
  client_limit = 1
  inet_listener echo {{
    port = {port}
  }}
}}
{extra}"""


def cote(*args: str, user: str | None = None, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    cmd = [PYTHON, "-m", "cote.cli.master", *args]
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, **(env or {})})


@pytest.fixture()
def d() -> Path:
    path = server_dir("master-daemon")
    write_prog(path, "echo.py", ECHO_PROG)
    yield path
    remove_dir(path)


def test_daemonises_writes_pid_refuses_second_start_and_stops(d: Path) -> None:
    port = free_port()
    conf = d / "cote.conf"
    conf.write_text(conf_text(d, port))
    r = cote("-c", str(conf))
    assert r.returncode == 0, r.stderr
    pid_file = d / "run" / "master.pid"
    deadline = time.monotonic() + 10
    while not pid_file.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    try:
        _daemon_checks(d, conf, port, pid, pid_file)
    finally:
        if alive(pid):
            os.kill(pid, 15)


def _daemon_checks(d: Path, conf: Path, port: int, pid: int, pid_file: Path) -> None:
    assert alive(pid)
    assert os.getsid(pid) != os.getsid(0)  # detached into its own session
    s = connect(port)
    assert recv_line(s).startswith(b"hello")
    s.close()
    second = cote("-c", str(conf))
    assert second.returncode == 89
    assert f"already running with PID {pid}" in second.stderr
    assert cote("-c", str(conf), "reload").returncode == 0
    adm = subprocess.run([PYTHON, "-m", "cote.cli.adm", "-c", str(conf), "reload"],
                         capture_output=True, text=True, cwd=ROOT)
    assert adm.returncode == 0, adm.stderr
    assert (d / "cote.log").read_text().count("Reload requested over the control socket") == 2
    conf.write_text(conf_text(d, port) + "service bad {\n")
    bad = cote("-c", str(conf), "reload")
    assert bad.returncode == 89 and "Fatal:" in bad.stderr
    conf.write_text(conf_text(d, port) + "service broken {\n")  # broken since the start
    stop = cote("-c", str(conf), "stop")
    assert stop.returncode == 0, stop.stderr
    assert not alive(pid) and not pid_file.exists()


def test_stale_pid_file_is_replaced(d: Path) -> None:
    (d / "run").mkdir(mode=0o755)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (d / "run" / "master.pid").write_text(f"{dead.pid}\n")
    m = MasterServer(d, conf_text(d, free_port())).start()
    try:
        assert int((d / "run" / "master.pid").read_text()) == m.pid
    finally:
        m.stop()


def test_print_config_is_coteconf_output_and_version(d: Path) -> None:
    conf = d / "cote.conf"
    conf.write_text(conf_text(d, 1234))
    for flag in ("-n", "-a"):
        ours = cote("-c", str(conf), flag)
        theirs = subprocess.run([PYTHON, "-m", "cote.cli.conf", "-c", str(conf), flag],
                                capture_output=True, text=True, cwd=ROOT)
        assert ours.returncode == theirs.returncode == 0
        assert ours.stdout == theirs.stdout and "service echo {" in ours.stdout
    v = cote("--version")
    assert v.returncode == 0 and v.stdout.strip()


def test_config_error_at_start_is_fatal_with_exit_89(d: Path) -> None:
    conf = d / "cote.conf"
    conf.write_text("base_dir = {d}/run\nnosuchsetting = 1\n")
    r = cote("-F", "-c", str(conf))
    assert r.returncode == 89 and "Fatal:" in r.stderr and "nosuchsetting" in r.stderr


def test_systemd_notify_and_socket_activation(d: Path) -> None:
    port = free_port()
    notify_path = d / "notify"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(15)
    conf = d / "cote.conf"
    conf.write_text(conf_text(d, port))
    # The socket is bound by "systemd" (this launcher) and passed as fd 3; the master must use
    # it: binding the port itself would fail with EADDRINUSE.
    launcher = (
        "import os, socket, sys\n"
        f"s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {port})); s.listen(16)\n"
        "os.dup2(s.fileno(), 3); os.set_inheritable(3, True)\n"
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='echo')\n"
        f"os.execv({PYTHON!r}, [{PYTHON!r}, '-m', 'cote.cli.master', '-F', '-c', {str(conf)!r}])\n"
    )
    proc = subprocess.Popen([PYTHON, "-c", launcher], cwd=ROOT,
                            env={**os.environ, "NOTIFY_SOCKET": str(notify_path)},
                            stderr=subprocess.PIPE)
    try:
        ready = notify.recv(4096).decode()
        assert "READY=1" in ready and f"MAINPID={proc.pid}" in ready
        s = connect(port)
        assert recv_line(s).startswith(b"hello")
        s.close()
        proc.terminate()
        assert proc.wait(15) == 0, proc.stderr.read() if proc.stderr else ""
        assert "STOPPING=1" in notify.recv(4096).decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()


def test_runs_as_a_non_root_user_with_everything_under_its_uid() -> None:
    vmail = mail_user()
    d = server_dir("master-user")
    try:
        port = free_port()
        write_prog(d, "echo.py", ECHO_PROG)
        (d / "cote.conf").write_text(conf_text(d, port, extra=f"""\
service qw {{
  executable = script {d}/qw.sh
  unix_listener qw {{
    mode = 0600
  }}
}}
"""))
        write_prog(d, "qw.sh", f"#!/bin/sh\nid -u > {d}/qw.uid\n")
        chown_tree(d, vmail.pw_uid, vmail.pw_gid)
        m = MasterServer(d, (d / "cote.conf").read_text(), user=vmail.pw_name)
        chown_tree(d, vmail.pw_uid, vmail.pw_gid)
        m.start()
        try:
            s = connect(port)
            assert recv_line(s).startswith(f"hello uid={vmail.pw_uid} ".encode())
            s.close()
            q = socket.socket(socket.AF_UNIX)
            q.settimeout(10)
            q.connect(str(d / "run" / "qw"))
            q.sendall(b"\n")
            assert recv_line(q) == b"+\n"
            q.close()
            assert (d / "qw.uid").read_text().strip() == str(vmail.pw_uid)
            procs = m.processes()
            assert {p["service"] for p in procs} >= {"log", "anvil", "echo", "qw"}
            for p in procs:
                st = os.stat(f"/proc/{p['pid']}")
                assert st.st_uid == vmail.pw_uid, p
            for path in (d / "run").iterdir():
                assert path.lstat().st_uid == vmail.pw_uid, path
            pids = [p["pid"] for p in procs] + [m.pid]
            stop = cote("-c", str(d / "cote.conf"), "stop", user=vmail.pw_name)
            assert stop.returncode == 0, stop.stderr
            for pid in pids:
                assert not alive(pid)
        finally:
            m.stop()
    finally:
        remove_dir(d)
    assert pwd.getpwuid(vmail.pw_uid).pw_name == vmail.pw_name


def test_reload_moves_logging_to_new_log_paths(d: Path) -> None:
    port = free_port()
    extra = """\
service qw {
  executable = script /bin/sh -c 'echo qw-ran >&2'
  unix_listener qw {
    mode = 0600
  }
}
"""
    m = MasterServer(d, conf_text(d, port, extra)).start()
    try:
        m.conf_path.write_text(conf_text(d, port, extra).replace(
            f"log_path = {d}/cote.log", f"log_path = {d}/new.log\ninfo_log_path = {d}/info.log"))
        assert m.control("reload") == {"ok": True}
        q = socket.socket(socket.AF_UNIX)
        q.settimeout(10)
        q.connect(str(d / "run" / "qw"))
        q.sendall(b"\n")
        assert recv_line(q) == b"+\n"
        q.close()
        deadline = time.monotonic() + 10
        while "qw-ran" not in ((d / "new.log").read_text() if (d / "new.log").exists() else ""):
            assert time.monotonic() < deadline, (d / "cote.log").read_text()
            time.sleep(0.05)
        assert "qw: Error: qw-ran" in (d / "new.log").read_text()
        assert "qw-ran" not in (d / "cote.log").read_text()
        m.stop()
        assert "master: Info: cote shutting down" in (d / "info.log").read_text()
    finally:
        m.stop()


def test_shutdown_clients_no_leaves_mail_processes_serving(d: Path) -> None:
    flag = d / "go"
    write_prog(d, "hold.sh", f"#!/bin/sh\nwhile [ ! -e {flag} ]; do sleep 0.05; done\n")
    conf = f"""\
base_dir = {d}/run
log_path = {d}/cote.log
protocols = pop3
shutdown_clients = no
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service pop3 {{
  executable = script {d}/hold.sh
  unix_listener hold {{
    mode = 0600
  }}
}}
service other {{
  executable = script {d}/hold.sh
  unix_listener other {{
    mode = 0600
  }}
}}
"""
    m = MasterServer(d, conf).start()
    try:
        _shutdown_checks(d, m, flag)
    finally:
        m.stop()
        flag.touch()  # never leave a hold.sh behind


def _shutdown_checks(d: Path, m: MasterServer, flag: Path) -> None:
    clients = []
    for name in ("hold", "other"):
        c = socket.socket(socket.AF_UNIX)
        c.settimeout(15)
        c.connect(str(d / "run" / name))
        c.sendall(b"\n")
        clients.append(c)
    mail = m.wait_for(lambda: [p["pid"] for p in m.processes("pop3") if p["available_count"] == 0],
                      what="busy pop3 process")
    other = m.wait_for(lambda: [p["pid"] for p in m.processes("other")
                                if p["available_count"] == 0], what="busy other process")
    m.stop()  # TERM: the master goes, the pop3 process finishes its client
    assert not alive(other[0]) and alive(mail[0])
    # the killed service's script went with it (process group); the mail one's still runs
    scripts = [p for p in os.listdir("/proc") if p.isdigit() and alive(int(p))
               and str(d / "hold.sh").encode() in _cmdline(p)]
    assert len(scripts) == 1
    assert recv_line(clients[1]) == b""  # the non-mail service's client was cut
    flag.touch()
    assert recv_line(clients[0]) == b"+\n"
    deadline = time.monotonic() + 10
    while alive(mail[0]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for c in clients:
        c.close()


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_children_exit_when_the_master_dies(d: Path) -> None:
    extra = f"""\
instance_name = second
service qw {{
  executable = script {d}/echo.py
  process_min_avail = 2
  unix_listener qw {{
    mode = 0600
  }}
}}
"""
    m = MasterServer(d, conf_text(d, free_port(), extra)).start()
    try:
        def running() -> list[dict] | None:
            ps = [p for p in m.processes() if p["service"] in ("log", "anvil", "qw")]
            return ps if len(ps) >= 4 else None

        procs = m.wait_for(running, what="log, anvil and two qw processes")
        # a named instance titles its processes like Dovecot's "dovecot-<instance>/<service>"
        want = ["cote-second/anvil", "cote-second/log", "cote-second/qw", "cote-second/qw"]
        # (a process just forked still shows the master's title for a moment)
        m.wait_for(lambda: sorted(proc_title(p["pid"]) for p in procs) == want, what="titles")
        assert m.proc is not None
        m.proc.kill()  # SIGKILL: no clean shutdown, only the death pipe tells the children
        m.proc.wait()
        deadline = time.monotonic() + 10
        while any(alive(p["pid"]) for p in procs):
            assert time.monotonic() < deadline, [p for p in procs if alive(p["pid"])]
            time.sleep(0.05)
    finally:
        m.stop()
