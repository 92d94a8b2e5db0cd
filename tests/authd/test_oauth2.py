"""passdb oauth2 (token introspection) against Dovecot's, both asking the same tiny local
introspection endpoint: OAUTHBEARER and XOAUTH2 (and PLAIN, whose password is the token)
with a good token, an inactive one, another user's, one without the required scope and one
the provider does not know; introspection_mode auth, get and post. Replies (with the JSON
error challenges), the oauth2 log lines and the HTTP requests each daemon made must be
equal."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.authd.pairs import oracle_pair
from tests.authd.test_daemon_vs_dovecot import Pair, b64, client_handshake

TOKENS: dict[str, dict[str, object]] = {
    "good1": {"active": True, "email": "user1", "scope": "mail imap"},
    "inactive": {"active": False, "email": "user1", "scope": "mail"},
    "other": {"active": True, "email": "user2", "scope": "mail"},
    "noscope": {"active": True, "email": "user1", "scope": "profile"},
}


class Introspection(BaseHTTPRequestHandler):
    """Answers a token's JSON (401 with an error object for unknown tokens); remembers what
    each request looked like."""

    seen: ClassVar[list[tuple[str, str, str, str]]] = []

    def _answer(self, token: str, body: str = "") -> None:
        self.seen.append((self.command, self.path, self.headers.get("Authorization") or "",
                          body))
        known = TOKENS.get(token)
        data = json.dumps(known if known is not None else {"error": "invalid_token"}).encode()
        self.send_response(200 if known is not None else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization") or ""
        query = parse_qs(urlsplit(self.path).query)
        self._answer(auth[7:] if auth.startswith("Bearer ") else query.get("token", [""])[0])

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self._answer(parse_qs(body).get("token", [""])[0], body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Introspection)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/introspect"
    server.shutdown()


@pytest.fixture(scope="module", params=["auth", "get", "post"])
def pair(request: pytest.FixtureRequest, endpoint: str) -> Iterator[Pair]:
    mode = request.param
    url = endpoint + "?token=" if mode == "get" else endpoint

    def conf(d: Path) -> str:
        (d / "dovecot-oauth2.conf.ext").write_text(
            f"introspection_mode = {mode}\nintrospection_url = {url}\n"
            "username_attribute = email\nactive_attribute = active\nactive_value = true\n"
            "scope = mail\n")
        return (f"auth_failure_delay = 0\nauth_verbose = yes\n"
                f"passdb {{\n  driver = oauth2\n  args = {d}/dovecot-oauth2.conf.ext\n}}\n")

    with oracle_pair({"x": "y"}, conf, mechanisms="plain oauthbearer xoauth2") as pair:
        yield pair


def xoauth2(user: str, token: str) -> tuple[str, bytes]:
    return "XOAUTH2", f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


def oauthbearer(user: str, token: str) -> tuple[str, bytes]:
    return "OAUTHBEARER", f"n,a={user},\x01auth=Bearer {token}\x01\x01".encode()


CASES = {
    "xoauth2 good token": xoauth2("user1", "good1"),
    "xoauth2 inactive token": xoauth2("user1", "inactive"),
    "xoauth2 another user's token": xoauth2("user1", "other"),
    "xoauth2 token without the scope": xoauth2("user1", "noscope"),
    "xoauth2 token the provider does not know": xoauth2("user1", "unknown"),
    "oauthbearer good token": oauthbearer("user1", "good1"),
    "oauthbearer another user's token": oauthbearer("user1", "other"),
    "oauthbearer token without the scope": oauthbearer("user1", "noscope"),
    "plain with a token as password": ("PLAIN", b"\0user1\0good1"),
}


def converse(path: str, mechanism: str, resp: bytes) -> list[str]:
    """AUTH, and the client's answer to an error challenge (\\x01 as RFC 7628 says)."""
    c, _ = client_handshake(path)
    try:
        c.send("AUTH", "1", mechanism, "service=imap", "secured", "no-penalty",
               "rip=127.0.0.2", "session=S", "resp=" + b64(resp))
        lines = [c.line()]
        if lines[0].startswith("CONT"):
            c.send("CONT", "1", b64(b"\x01"))
            lines.append(c.line())
    finally:
        c.close()
    return lines


def oauth2_log(text: str) -> list[str]:
    return re.findall(r"auth: \w+: (oauth2\(.*)", text)


@pytest.mark.parametrize("name", list(CASES))
def test_same_replies_requests_and_log_lines(pair: Pair, name: str) -> None:
    mechanism, resp = CASES[name]
    logs = (len(oauth2_log(pair.dovecot.log_path.read_text())),
            len(oauth2_log(pair.cote.log_text())))
    del Introspection.seen[:]
    theirs = converse(str(pair.dovecot.base_dir / "auth-client"), mechanism, resp)
    their_http = list(Introspection.seen)
    del Introspection.seen[:]
    ours = converse(str(pair.cote.socket_path("auth-client")), mechanism, resp)
    assert ours == theirs
    assert Introspection.seen == their_http and their_http
    if theirs[-1].startswith("OK"):
        return
    deadline = time.monotonic() + 5
    while True:  # both write through a log process
        their_log = oauth2_log(pair.dovecot.log_path.read_text())[logs[0]:]
        our_log = oauth2_log(pair.cote.log_text())[logs[1]:]
        if (their_log and len(our_log) >= len(their_log)) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert our_log == their_log
    assert their_log and "oauth2 failed" in their_log[0]
