"""What the master prepares for a login service before it forks (login/service.py): the
settings every child would otherwise build, and a warm-up run of a client's code paths that
must leave nothing behind; and the login process's own loop runner."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from cote.auth.protocol.auth_client import MechanismInfo
from cote.config import Config, load
from cote.login import imap, pop3
from cote.login.server import ConnectionFacts, Frontend, FrontendFactory
from cote.login.service import PreparedLogin, prepare_login, run_loop
from tests.support.cote import CoteServer


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_prepare_builds_the_settings_and_leaves_nothing_open(tmp_path: Path) -> None:
    passwd = tmp_path / "users"
    passwd.write_text("")
    server = CoteServer(mail_location=f"maildir:{tmp_path}/%u", passwd_file=passwd,
                        protocols="imap pop3",
                        extra_conf="login_trusted_networks = 10.0.0.0/8\n"
                                   "login_greeting = Hello there\n")
    try:
        config = load(str(server.config_path))
        before = open_fds()
        prepared = {"imap": imap.prepare(config), "pop3": pop3.prepare(config)}
        assert open_fds() == before  # the warm-up's loops and sockets are closed
        with_imap = prepared["imap"]["login"]
        assert isinstance(with_imap, PreparedLogin)
        assert [str(n) for n in with_imap.trusted] == ["10.0.0.0/8"]
        facts = ConnectionFacts("127.0.0.1", 143, "10.1.2.3", 5555, "s", False, True, True)
        assert b"Hello there" in with_imap.factory(facts, ()).greeting()
        with_pop3 = prepared["pop3"]["login"]
        assert isinstance(with_pop3, PreparedLogin)
        assert with_pop3.factory(facts, ()).greeting().startswith(b"+OK [XCLIENT] Hello there")
    finally:
        server.cleanup()


def test_a_failing_warm_up_does_not_stop_the_start(tmp_path: Path) -> None:
    """The warm-up only saves time: a frontend that breaks on the sample dialogue must not
    turn into a config error (the master refuses to start on one)."""
    passwd = tmp_path / "users"
    passwd.write_text("")
    server = CoteServer(mail_location=f"maildir:{tmp_path}/%u", passwd_file=passwd,
                        protocols="imap")
    calls: list[str] = []

    def breaking_factory(cfg: Config, tls_possible: bool) -> FrontendFactory:
        def make(facts: ConnectionFacts, mechanisms: tuple[MechanismInfo, ...]) -> Frontend:
            calls.append(facts.session)
            raise RuntimeError("this frontend cannot greet")
        return make

    try:
        prepared = prepare_login(load(str(server.config_path)), "imap", breaking_factory)
    finally:
        server.cleanup()
    assert calls and isinstance(prepared["login"], PreparedLogin)


def test_run_loop_finishes_what_is_left() -> None:
    finished: list[str] = []

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            finished.append("cancelled and finished")

    async def main() -> None:
        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0)

    run_loop(main())
    assert finished == ["cancelled and finished"]
