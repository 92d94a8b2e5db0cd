"""The process contract end to end with the real services: a POP3 login through cote's
pop3-login (dovenull, chrooted), auth (the internal user), fd passing to a pop3 process that
becomes the mail user, with Dovecot's log lines. Skipped only while one of those services has
no implementation in the tree."""

from __future__ import annotations

import os
import poplib
import pwd
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cote.master import registry
from tests.master.conftest import MasterServer, proc_uid
from tests.support.env import chown_tree, free_port, mail_user

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def master(workdir: Path) -> Iterator[MasterServer]:
    for executable in (("pop3-login",), ("auth",), ("pop3",)):
        try:
            registry.resolve(executable)
        except registry.NotImplementedYet:
            pytest.skip(f"{executable[0]} is not implemented yet")
    vmail = mail_user()
    (workdir / "users").write_text(
        f"user1:{{PLAIN}}pass1:{vmail.pw_uid}:{vmail.pw_gid}::{workdir}/home/user1::\n")
    (workdir / "mail").mkdir()
    (workdir / "home").mkdir()
    chown_tree(workdir / "mail", vmail.pw_uid, vmail.pw_gid)
    chown_tree(workdir / "home", vmail.pw_uid, vmail.pw_gid)
    port = free_port()
    m = MasterServer(workdir, f"""\
base_dir = {workdir}/run
log_path = {workdir}/cote.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
mail_location = maildir:{workdir}/mail/%u
first_valid_uid = {vmail.pw_uid}
passdb {{
  driver = passwd-file
  args = {workdir}/users
}}
userdb {{
  driver = passwd-file
  args = {workdir}/users
}}
service pop3-login {{
  process_min_avail = 1
  inet_listener pop3 {{
    port = {port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
""")
    m.port = port  # type: ignore[attr-defined]
    m.start()
    yield m
    m.stop()


def test_pop3_login_is_served_by_the_supervised_processes(master: MasterServer) -> None:
    login = master.wait_for(lambda: [p for p in master.processes("pop3-login")
                                     if p["initialized"]], what="pop3-login")[0]
    assert proc_uid(login["pid"]) == pwd.getpwnam("dovenull").pw_uid
    assert os.readlink(f"/proc/{login['pid']}/root") == str(master.base_dir / "login")
    p = poplib.POP3("127.0.0.1", master.port, timeout=30)  # type: ignore[attr-defined]
    assert p.getwelcome().startswith(b"+OK")
    p.user("user1")
    assert p.pass_("pass1").startswith(b"+OK")
    assert p.stat() == (0, 0)
    # The pop3 process serving this client is the busy one (idle warm spares wait as root).
    mail = [m for m in master.processes("pop3") if m["available_count"] == 0]
    assert mail and proc_uid(mail[0]["pid"]) == mail_user().pw_uid
    p.quit()
    m = master.wait_log(r"pop3-login: Info: Login: user=<user1>, method=PLAIN, rip=127\.0\.0\.1, "
                        r"lip=127\.0\.0\.1, mpid=(\d+), secured, session=<([^>]+)>$")
    master.wait_log(rf"pop3\(user1\)<{m.group(1)}><{re.escape(m.group(2))}>: Info: "
                    r"Disconnected: Logged out")
    auth = master.processes("auth")
    assert auth and proc_uid(auth[0]["pid"]) == pwd.getpwnam("dovecot").pw_uid
