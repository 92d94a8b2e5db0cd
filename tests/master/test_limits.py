"""process_limit / client_limit under load, as Dovecot does it.

Dovecot's master (2.3) watches a service's listeners only while none of its processes can take
a client. When a connection arrives and process_limit processes are all full, it logs
"service(x): process_limit (N) reached, client connections are being dropped" (at most once a
minute), stops listening and leaves the connections in the kernel's queue for 10 seconds; if a
process becomes available in that time the queued clients are served, otherwise they are
accepted and closed (dropped) and the master listens again.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.master.conftest import ECHO_PROG, MasterServer, free_port, recv_line, write_prog

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def master(workdir: Path) -> Iterator[MasterServer]:
    flag = workdir / "go"
    write_prog(workdir, "slow.sh", f"#!/bin/sh\nfor i in $(seq 300); do [ -e {flag} ] && exit 0;"
                                   " sleep 0.1; done\nexit 1\n")
    write_prog(workdir, "echo.py", ECHO_PROG)
    port, login_port = free_port(), free_port()
    m = MasterServer(workdir, f"""\
base_dir = {workdir}/run
log_path = {workdir}/cote.log
protocols =
listen = 127.0.0.1
service slow {{
  executable = script {workdir}/slow.sh
  process_limit = 2
  client_limit = 1
  inet_listener slow {{
    port = {port}
  }}
}}
service lg {{
  executable = {workdir}/echo.py
  type = login
  process_limit = 1
  client_limit = 1
  inet_listener lg {{
    port = {login_port}
  }}
}}
""")
    m.login_port = login_port  # type: ignore[attr-defined]
    m.port = port  # type: ignore[attr-defined]
    m.flag = flag  # type: ignore[attr-defined]
    m.start()
    yield m
    m.stop()


def listener_flags(pid: int, port: int) -> int:
    """The file status flags a process sees on its TCP listening socket for ``port``."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
            inode = fields[9]
    assert inode is not None
    for fd in os.listdir(f"/proc/{pid}/fd"):
        if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
            for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines():
                if line.startswith("flags:"):
                    return int(line.split()[1], 8)
    raise AssertionError("listener not found")


def client(port: int, results: dict[int, tuple[bytes, float]], i: int, t0: float) -> None:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"\n")  # empty request: run the script with its configured arguments
    try:
        reply = recv_line(s)
    except OSError:
        reply = b"<error>"
    results[i] = (reply, time.monotonic() - t0)
    s.close()


def run_clients(port: int, n: int) -> tuple[dict[int, tuple[bytes, float]], list[threading.Thread]]:
    results: dict[int, tuple[bytes, float]] = {}
    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(port, results, i, t0)) for i in range(n)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    return results, threads


def test_five_clients_two_processes_of_one_client_queue_then_drop(master: MasterServer) -> None:
    results, threads = run_clients(master.port, 5)  # type: ignore[attr-defined]
    master.wait_log(r"master: Warning: service\(slow\): process_limit \(2\) reached, client "
                    r"connections are being dropped$")
    status = {s["name"]: s for s in master.control("service-status")["services"]}["slow"]
    assert status["process_count"] == 2 and status["process_avail"] == 0
    # the three extra clients wait in the queue, then are dropped after 10 seconds
    master.wait_for(lambda: len(results) >= 3, timeout=20, what="dropped clients")
    dropped = sorted(results.values(), key=lambda r: r[1])
    # dropped = accepted and closed unanswered (a reset, as the request was never read)
    assert len(dropped) == 3 and all(r in (b"", b"<error>") for r, _ in dropped), dropped
    assert all(8.5 <= took <= 15 for _, took in dropped), dropped
    # the two served clients finish normally
    master.flag.touch()  # type: ignore[attr-defined]
    for t in threads:
        t.join(15)
    served = [reply for reply, _ in results.values() if reply not in (b"", b"<error>")]
    assert served == [b"+\n", b"+\n"]
    assert master.log().count("process_limit (2) reached") == 1  # at most once a minute
    # the drain made the shared listening socket non-blocking only for a moment: the script
    # service's processes (which use it non-blocking) still see it that way
    pid = master.processes("slow")[0]["pid"]
    assert listener_flags(pid, master.port) & os.O_NONBLOCK  # type: ignore[attr-defined]


def test_queued_client_is_served_when_a_process_frees_up(master: MasterServer) -> None:
    master.flag.unlink(missing_ok=True)  # type: ignore[attr-defined]
    results, threads = run_clients(master.port, 3)  # type: ignore[attr-defined]
    time.sleep(1.0)
    assert results == {}  # two busy, one queued
    master.flag.touch()  # type: ignore[attr-defined]
    for t in threads:
        t.join(15)
    assert sorted(r for r, _ in results.values()) == [b"+\n"] * 3


def test_login_service_at_its_limit_is_told_all_processes_are_full(master: MasterServer) -> None:
    port = master.login_port  # type: ignore[attr-defined]
    first = socket.create_connection(("127.0.0.1", port), timeout=15)
    assert recv_line(first).startswith(b"hello")
    second = socket.create_connection(("127.0.0.1", port), timeout=15)
    # process_limit = 1: Dovecot names client_limit in the warning then
    master.wait_log(r"master: Warning: service\(lg\): client_limit \(1\) reached, client "
                    r"connections are being dropped$")
    master.wait_log(r"lg: Error: all processes full$")  # the SIGUSR2 notification
    first.sendall(b"bye\n")
    assert recv_line(first) == b"echo bye\n"
    first.close()
    assert recv_line(second).startswith(b"hello")  # queued, then served (within 10 s)
    second.close()
