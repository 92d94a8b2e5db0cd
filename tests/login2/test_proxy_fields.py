"""Proxy passdb fields that change what the backend sees: ``source_ip`` (the address the
proxy connects from) and ``proxy_not_trusted`` (no ID/XCLIENT naming the real client). The
backend is a Dovecot that trusts 127.0.0.0/8, so its Login lines show whose address it took."""

from __future__ import annotations

import imaplib
import poplib
import re
from collections.abc import Iterator

import pytest

from tests.login2.differential import backend_login_line
from tests.support.cote import CoteServer
from tests.support.dovecot import DovecotOracle


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[DovecotOracle, CoteServer]]:
    backend = DovecotOracle(users={"trusted": "secret", "nottrusted": "secret"},
                            extra_conf="login_trusted_networks = 127.0.0.0/8\n"
                                       "auth_failure_delay = 0\n")
    backend.start()
    imap, pop3 = backend.ports["imap"], backend.ports["pop3"]
    front = DovecotOracle(users={"trusted": "secret", "nottrusted": "secret",
                                 "poptrusted": "secret", "popnottrusted": "secret"},
                          passwd_extra={
        "trusted": f"proxy host=127.0.0.1 port={imap} source_ip=127.0.0.2",
        "nottrusted": f"proxy host=127.0.0.1 port={imap} source_ip=127.0.0.2 "
                      "proxy_not_trusted",
        "poptrusted": f"proxy host=127.0.0.1 port={pop3} destuser=trusted source_ip=127.0.0.3",
        "popnottrusted": f"proxy host=127.0.0.1 port={pop3} destuser=nottrusted "
                         "source_ip=127.0.0.3 proxy_not_trusted"})
    front.write_config()
    cote = CoteServer(mail_location=f"maildir:{front.dir}/mail/%u",
                      passwd_file=front.dir / "users", protocols="imap pop3",
                      extra_conf="disable_plaintext_auth = no\n")
    try:
        yield backend, cote.start()
    finally:
        cote.cleanup()
        front.cleanup()
        backend.cleanup()


def test_imap_source_ip_and_forwarded_client(servers: tuple[DovecotOracle, CoteServer]) -> None:
    backend, cote = servers
    for user in ("trusted", "nottrusted"):
        conn = imaplib.IMAP4("127.0.0.1", cote.ports["imap"])
        conn.login(user, "secret")
        conn.logout()
    # Trusted: the backend takes the client's address from ID (the real client, 127.0.0.1)
    # and our session id; not trusted: it sees where the proxy connected from.
    trusted = backend_login_line(backend.log_path, "imap", "trusted")
    assert "rip=127.0.0.1," in trusted, trusted
    ours = cote.wait_for_log("Started proxying to <127.0.0.1>")
    assert any(re.search(r"session=<([^>]+)>", x).group(1) in trusted  # type: ignore[union-attr]
               for x in ours if "proxy(trusted," in x), (ours, trusted)
    assert "rip=127.0.0.2," in backend_login_line(backend.log_path, "imap", "nottrusted")


def test_pop3_source_ip_and_xclient(servers: tuple[DovecotOracle, CoteServer]) -> None:
    backend, cote = servers
    before = backend.log_path.read_text().count("pop3-login: Info: Login:")
    for user in ("poptrusted", "popnottrusted"):
        conn = poplib.POP3("127.0.0.1", cote.ports["pop3"])
        conn.user(user)
        conn.pass_("secret")
        conn.quit()
    assert backend.log_path.read_text().count("pop3-login: Info: Login:") == before + 2
    assert "rip=127.0.0.1," in backend_login_line(backend.log_path, "pop3", "trusted")
    assert "rip=127.0.0.3," in backend_login_line(backend.log_path, "pop3", "nottrusted")
