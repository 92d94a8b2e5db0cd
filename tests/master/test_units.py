"""The master's pieces without processes: anvil's state machine, the log wire format and line
format, login_log_format, settings resolution from a real cote.config, listener binding."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cote.config import load
from cote.ipc import STATUS, ServiceContext, StatusReporter, pack_status, unpack_statuses
from cote.log import Logger, LoginLogFormatter, decode_line, encode_record, mail_log_prefix
from cote.master import listeners, registry, settings
from cote.master.anvil import AnvilState
from cote.master.logservice import LineReader, LogSink, LogTargets
from cote.master.master import exit_text
from cote.master.script import parse_request, program_args
from tests.support.env import free_port, remove_dir, server_dir


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_anvil_penalty_counts_distinct_passwords_and_expires() -> None:
    clock = Clock()
    a = AnvilState(now=clock)
    a.handle(1, "PENALTY-INC\t1.2.3.4\tc1\t1")
    a.handle(1, "PENALTY-INC\t1.2.3.4\tc1\t2")  # same wrong password: not counted again
    assert a.handle(1, "PENALTY-GET\t1.2.3.4") == ["1\t1000"]
    a.handle(1, "PENALTY-INC\t1.2.3.4\tc2\t2")
    assert a.handle(1, "PENALTY-GET\t1.2.3.4") == ["2\t1000"]
    assert a.handle(1, "PENALTY-DUMP") == ["1.2.3.4\t2\t1000", ""]
    clock.t += 3600
    assert a.handle(1, "PENALTY-GET\t1.2.3.4") == ["0\t0"]


def test_anvil_connections_are_per_ident_and_die_with_their_connection() -> None:
    a = AnvilState()
    a.handle(7, "CONNECT\t10\timap/1.1.1.1/u")
    a.handle(7, "CONNECT\t11\timap/1.1.1.1/u")
    a.handle(8, "CONNECT\t12\timap/1.1.1.1/u")
    assert a.handle(9, "LOOKUP\timap/1.1.1.1/u") == ["3"]
    assert a.handle(9, "CONNECT-DUMP") == ["imap/1.1.1.1/u\t3\t10,11,12", ""]
    a.handle(9, "KILL\t12")
    assert a.handle(9, "LOOKUP\timap/1.1.1.1/u") == ["2"]
    a.connection_closed(7)
    assert a.handle(9, "LOOKUP\timap/1.1.1.1/u") == ["0"]
    with pytest.raises(ValueError):
        a.handle(9, "CONNECT\tnot-a-pid\tx")
    with pytest.raises(ValueError):
        a.handle(9, "FROB")


def test_log_records_round_trip_and_raw_stderr_is_an_error() -> None:
    rec = encode_record("I", "imap(u1)<12><s>: ", "Logged out in=1 out=2\nsecond line")
    assert rec.endswith(b"\n") and rec.count(b"\n") == 1 and len(rec) < 4096
    assert decode_line(rec[:-1], "imap: ") == ("Info", "imap(u1)<12><s>: ",
                                               "Logged out in=1 out=2 second line")
    assert decode_line(b"Traceback (most recent call last):", "imap: ") == (
        "Error", "imap: ", "Traceback (most recent call last):")
    assert len(encode_record("E", "x: ", "y" * 100000)) <= 4096
    r = LineReader("p: ")
    assert r.feed(b"ab") == [] and r.feed(b"c\nde\n") == [b"abc", b"de"] and r.feed(b"") == []


def test_log_sink_writes_dovecot_lines_and_splits_by_level(tmp_path: Path) -> None:
    main, info, debug = tmp_path / "main.log", tmp_path / "info.log", tmp_path / "debug.log"
    sink = LogSink(LogTargets(str(main), str(info), str(debug), "mail", "%Y "))
    sink.write("Info", "imap-login: ", "Login: user=<u>")
    sink.write("Error", "auth: ", "boom")
    sink.write("Debug", "auth: ", "dbg")
    sink.close()
    year = time.strftime("%Y")
    assert main.read_text() == f"{year} auth: Error: boom\n"
    assert info.read_text() == f"{year} imap-login: Info: Login: user=<u>\n"
    assert debug.read_text() == f"{year} auth: Debug: dbg\n"
    only = LogSink(LogTargets(str(tmp_path / "all.log"), "", "", "mail", ""))
    only.write("Warning", "master: ", "w")
    only.write("Info", "master: ", "i")
    assert (tmp_path / "all.log").read_text() == "master: Warning: w\nmaster: Info: i\n"


def test_login_log_format_drops_empty_elements() -> None:
    f = LoginLogFormatter("user=<%u> method=%m rip=%r lip=%l mpid=%e %c session=<%{session}>",
                          "%$: %s")
    values = {"user": "u1", "mechanism": "PLAIN", "remote_ip": "10.0.0.2",
              "local_ip": "10.0.0.1", "mail_pid": "4242", "secured": "TLS", "session": "abc"}
    assert f.format("Login", values) == ("Login: user=<u1>, method=PLAIN, rip=10.0.0.2, "
                                         "lip=10.0.0.1, mpid=4242, TLS, session=<abc>")
    failed = {**values, "mail_pid": "", "secured": None}
    assert f.format("Disconnected (auth failed, 1 attempts in 2 secs)", failed) == (
        "Disconnected (auth failed, 1 attempts in 2 secs): user=<u1>, method=PLAIN, "
        "rip=10.0.0.2, lip=10.0.0.1, session=<abc>")


@pytest.fixture()
def conf_dir() -> Path:
    d = server_dir("master-units")
    yield d
    remove_dir(d)


def test_settings_resolve_dovecot_defaults_and_listeners(conf_dir: Path) -> None:
    conf = conf_dir / "dovecot.conf"
    conf.write_text(f"""\
base_dir = {conf_dir}/run
protocols = imap pop3
listen = *, ::
default_process_limit = 7
default_vsz_limit = 128M
service imap-login {{
  inet_listener imap {{
    port = 10143
    haproxy = yes
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = 10993
  }}
  process_min_avail = 2
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service auth {{
  unix_listener /var/spool/postfix/private/auth {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
service quota-warning {{
  executable = script /usr/local/bin/quota-warning.sh
  user = nobody
  extra_groups = mail
  vsz_limit = 0
}}
""")
    ms = settings.build(load(str(conf)))
    by = {s.name: s for s in ms.services}
    assert "lmtp" not in by and "config" not in by and "config" in ms.skipped
    il = by["imap-login"]
    assert il.user == "dovenull" and il.chroot == f"{conf_dir}/run/login"
    # cote's own default (docs/differences.md): login services in high-performance mode.
    assert il.process_limit == 7 and il.client_limit == 1000 and il.service_count == 0
    assert il.vsz_limit == 128 * 1024 * 1024 and il.process_min_avail == 2
    inet = [(x.name, x.address, x.port, x.ssl, x.haproxy) for x in il.listeners]
    assert inet == [("imap", "*", 10143, False, True), ("imap", "::", 10143, False, True),
                    ("imaps", "127.0.0.1", 10993, True, False)]
    assert by["pop3-login"].listeners == ()
    auth = {x.name: x for x in by["auth"].listeners}
    pf = auth["/var/spool/postfix/private/auth"]
    assert (pf.path, pf.mode, pf.user, pf.group) == ("/var/spool/postfix/private/auth", 0o660,
                                                     "postfix", "postfix")
    assert auth["login/login"].path == f"{conf_dir}/run/login/login"
    assert auth["auth-client"].user == "dovecot"
    anvil = by["anvil"]
    assert anvil.user == "dovecot" and anvil.idle_kill == 0 and anvil.process_limit == 1
    qw = by["quota-warning"]
    assert qw.executable == ("script", "/usr/local/bin/quota-warning.sh")
    assert qw.vsz_limit == 0 and qw.extra_groups == ("mail",)
    creds = settings.credentials(qw)
    assert creds is not None and creds.uid == 65534 and len(creds.groups) == 2
    assert program_args(list(qw.executable)) == ["/usr/local/bin/quota-warning.sh"]
    impl = registry.resolve(qw.executable)
    assert impl.kind == "python" and impl.func is not None
    assert registry.resolve(("/bin/true",)).kind == "exec"
    assert registry.builtin_name(("auth", "-w")) == "auth-worker"
    with pytest.raises(registry.NotImplementedYet):
        registry.resolve(("quota-status", "-p", "postfix"))
    assert mail_log_prefix(load(str(conf)), {"service": "imap", "user": "u",
                                             "session": "S"}).startswith("imap(u)<")


def test_unix_listener_mode_owner_and_stale_socket(conf_dir: Path) -> None:
    path = conf_dir / "sock"
    spec = settings.ListenerSpec(kind="unix", name="sock", path=str(path), mode=0o660,
                                 user="nobody", group="mail")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on: replaced
    b = listeners.bind(spec, as_root=True)
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_uid == 65534
    with pytest.raises(listeners.ListenerError, match="Socket already exists"):
        listeners.bind(spec, as_root=True)  # a live one is not stolen
    b.close()
    assert not path.exists()
    fifo = settings.ListenerSpec(kind="fifo", name="f", path=str(conf_dir / "f"), mode=0o600)
    fb = listeners.bind(fifo, as_root=True)
    assert stat.S_ISFIFO(os.stat(conf_dir / "f").st_mode)
    fb.close()


def test_status_changes_the_master_does_not_act_on_wait_for_the_loop_timer() -> None:
    """A process with many clients tells the master at once when it stops being idle or
    becomes full (or no longer is), other counts at most once a second, by a loop timer."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    timers: list[tuple[float, Callable[[], None]]] = []
    rep = StatusReporter(w, 1, 1000)
    rep.defer_with(lambda delay, cb: timers.append((delay, cb)))

    def sent() -> list[int]:
        try:
            return [avail for _pid, _gen, avail in unpack_statuses(bytearray(os.read(r, 1000)))]
        except BlockingIOError:
            return []

    rep.report(999)                 # no longer idle: at once
    assert sent() == [999] and not timers
    rep.report(998)
    rep.report(997)                 # one timer for both
    assert sent() == [] and len(timers) == 1 and 0 < timers[0][0] <= 1.0
    timers.pop()[1]()               # the timer sends the latest count
    assert sent() == [997]
    rep.report(1000)                # idle again: at once, timer or not
    rep.report(0)                   # full: at once
    rep.report(1)                   # no longer full: at once
    assert sent() == [1000, 0, 1] and not timers
    os.close(r)
    os.close(w)


def test_status_records_and_exit_texts() -> None:
    r, w = os.pipe()
    rep = StatusReporter(w, 3, 10)
    rep.report()
    rep.report(10)  # unchanged: not written again
    rep.report(4)
    buf = bytearray(os.read(r, 100) + pack_status(1, 2, 3)[:5])
    assert unpack_statuses(buf) == [(os.getpid(), 3, 10), (os.getpid(), 3, 4)]
    assert len(buf) == 5 and STATUS.size == 12 == struct.calcsize("=iII")
    os.close(r)
    os.close(w)
    spec = settings.ServiceSpec(name="imap", executable=("imap",), vsz_limit=256 * 1024 * 1024)
    assert exit_text(spec, 0) is None
    assert exit_text(spec, 9) == "killed with signal 9"
    assert exit_text(spec, 1 << 8) == "returned error 1"
    assert exit_text(spec, 83 << 8).startswith(
        "returned error 83 (Out of memory (service imap { vsz_limit=256 MB }, you may need to "
        "increase it)")


def test_script_requests() -> None:
    assert parse_request(b"VERSION\tscript\t4\t0\nnoreply\n95\tuser@x\n\nbody") == (
        ["95", "user@x"], True, b"body")
    assert parse_request(b"a\tb\n") is None
    assert parse_request(b"\n") == ([], False, b"")


def test_asyncio_handlers_stop_accepting_on_quit_and_master_death() -> None:
    death_r, death_w = os.pipe()
    status_r, status_w = os.pipe()
    ctx = ServiceContext(name="t", config=None, settings=None, listeners=[],
                         status=StatusReporter(status_w, 1, 5), master_death_fd=death_r,
                         log=Logger("t: ", fd=status_w), client_limit=5, service_count=0,
                         idle_kill=0, executable=["t"], base_dir="/", generation=1)
    stopped: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ctx.install_asyncio_handlers(loop)
        ctx.on_stop_accepting(lambda: stopped.append("stop"))
        ctx.client_connected()
        assert ctx.available() == 4
        os.kill(os.getpid(), signal.SIGQUIT)
        await asyncio.sleep(0.1)
        assert stopped == ["stop"] and not ctx.accepting and not ctx.should_exit()
        os.close(death_w)
        await asyncio.sleep(0.1)
        assert ctx.master_dead
        ctx.client_disconnected()
        assert ctx.should_exit()
        loop.remove_signal_handler(signal.SIGQUIT)
        loop.remove_signal_handler(signal.SIGINT)

    asyncio.run(main())
    records = unpack_statuses(bytearray(os.read(status_r, 1000)))
    assert [r[2] for r in records] == [4, 0]  # connected, then stopped accepting
    for fd in (death_r, status_r, status_w):
        os.close(fd)


def test_wildcard_listen_binds_ipv4_and_ipv6_on_the_same_port() -> None:
    port = free_port()
    v4 = listeners.bind(settings.ListenerSpec(kind="inet", name="imap", address="*", port=port),
                        as_root=True)
    v6 = listeners.bind(settings.ListenerSpec(kind="inet", name="imap", address="::", port=port),
                        as_root=True)
    try:
        assert v4.sock is not None and v6.sock is not None
        assert v4.sock.getsockname() == ("0.0.0.0", port)
        assert v6.sock.getsockname()[:2] == ("::", port)
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        with pytest.raises(listeners.ListenerError, match="Address already in use"):
            listeners.bind(settings.ListenerSpec(kind="inet", name="x", address="127.0.0.1",
                                                 port=port), as_root=True)
    finally:
        v4.close()
        v6.close()


def test_dev_stderr_log_path(capfd: pytest.CaptureFixture[str]) -> None:
    sink = LogSink(LogTargets("/dev/stderr", "", "", "mail", ""))
    sink.write("Info", "master: ", "to stderr")
    sink.close()
    assert capfd.readouterr().err == "master: Info: to stderr\n"


def test_service_count_and_client_limit_bound_what_a_process_takes() -> None:
    r, w = os.pipe()
    ctx = ServiceContext(name="t", config=None, settings=None, listeners=[],
                         status=StatusReporter(w, 1, 3), master_death_fd=-1,
                         log=Logger("t: ", fd=w), client_limit=3, service_count=2,
                         idle_kill=0, executable=["t"], base_dir="/", generation=1)
    assert ctx.available() == 2  # service_count caps the lifetime total
    ctx.client_connected()
    ctx.client_connected()
    assert ctx.available() == 0 and not ctx.accepting and not ctx.should_exit()
    ctx.client_disconnected()
    ctx.client_disconnected()
    assert ctx.should_exit()
    records = unpack_statuses(bytearray(os.read(r, 1000)))
    assert [x[2] for x in records] == [1, 0]
    os.close(r)
    os.close(w)
