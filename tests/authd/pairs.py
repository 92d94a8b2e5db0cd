"""One Dovecot and one cote started on the same passwd-file and the same auth config, for the
daemon-level differential tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.auth.auth_socket import wait_for_socket
from tests.authd.test_daemon_vs_dovecot import Pair
from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle


@contextmanager
def oracle_pair(users: Mapping[str, str], conf: Callable[[Path], str] | str, *,
                mechanisms: str = "plain login",
                passwd_extra: Mapping[str, str] | None = None) -> Iterator[Pair]:
    """``conf`` (or ``conf(dir)``, to name files written in the Dovecot's directory before
    it starts) is appended to both configs."""
    dc = DovecotOracle(users=users, passwd_extra=passwd_extra)
    try:
        text = conf(dc.dir) if callable(conf) else conf
        dc.extra_conf = f"auth_mechanisms = {mechanisms}\n{text}"
        dc.start()
        wait_for_socket(dc.base_dir / "auth-client")
        cote = CoteServer(mail_location=f"maildir:{dc.dir}/mail/%u",
                          passwd_file=dc.dir / "users", protocols="lmtp",
                          auth_mechanisms=mechanisms, extra_conf=text)
        try:
            yield Pair(dc, cote.start())
        finally:
            cote.cleanup()
    finally:
        dc.cleanup()
