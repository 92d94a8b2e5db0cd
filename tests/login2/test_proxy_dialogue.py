"""The sans-IO backend login machines and the proxy field parsing, byte by byte."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cote.login.forward import Forwarded, from_imap_id, from_xclient
from cote.login.proxy import (
    BackendBroken,
    ClientFacts,
    DisconnectSpreader,
    ImapBackendLogin,
    LoggedIn,
    LoginRefused,
    Pop3BackendLogin,
    ProxyTarget,
    Send,
    StartBackendTls,
    imap_quote,
    plaintext_password,
    proxy_target,
)

CLIENT = ClientFacts("10.0.0.9", 5555, "10.0.0.1", 143, "sess1")
BANNER = b"* OK [CAPABILITY IMAP4rev1 ID STARTTLS] ready.\r\n"


def test_proxy_fields() -> None:
    assert proxy_target({"user": "u"}, protocol="imap", user="u", password="p") is None
    t = proxy_target({"proxy": "", "host": "h", "destuser": "d", "ssl": "yes"},
                     protocol="imap", user="u", password="p")
    assert t == ProxyTarget("h", 993, "d", "p", ssl="yes")
    t = proxy_target({"proxy_maybe": "", "host": "h", "port": "2110", "pass": "x",
                      "starttls": "any-cert", "proxy_timeout": "7"},
                     protocol="pop3", user="u", password="p")
    assert t == ProxyTarget("h", 2110, "u", "x", ssl="any-cert", starttls=True, timeout=7.0,
                            maybe=True)
    assert t.is_ourself("h", 2110) and not t.is_ourself("h", 110)
    for bad in ({"proxy": ""}, {"proxy": "", "host": "h", "port": "99999"},
                {"proxy": "", "host": "h", "ssl": "maybe"}):
        with pytest.raises(ValueError):
            proxy_target(bad, protocol="imap", user="u", password="p")


def test_plaintext_password() -> None:
    assert plaintext_password("PLAIN", [b"\0u\0secret"]) == "secret"
    assert plaintext_password("LOGIN", [b"u", b"secret"]) == "secret"
    assert plaintext_password("CRAM-MD5", [b"u abc"]) is None


def test_imap_login_with_id_and_tag_rewrite() -> None:
    m = ImapBackendLogin(ProxyTarget("h", 143, "u", 'p"w'), "a1", CLIENT)
    [send] = m.feed(BANNER)
    assert isinstance(send, Send)
    assert send.data == (b'I ID ("x-session-id" "sess1" "x-originating-ip" "10.0.0.9" '
                         b'"x-originating-port" "5555" "x-connected-ip" "10.0.0.1" '
                         b'"x-connected-port" "143" "x-proxy-ttl" "4")\r\n'
                         b'L LOGIN "u" "p\\"w"\r\n')
    assert m.feed(b'* ID ("name" "Dovecot")\r\nI OK ID completed.\r\n') == []
    assert m.feed(b"L OK [CAPABILITY IMAP4rev1] Logged in\r\n* 1 EXISTS\r\n") == \
        [LoggedIn(b"a1 OK [CAPABILITY IMAP4rev1] Logged in\r\n")]
    assert m.leftover() == b"* 1 EXISTS\r\n"


def test_imap_capability_sent_becomes_untagged() -> None:
    m = ImapBackendLogin(ProxyTarget("h", 143, "u", "p"), "b", CLIENT, capability_sent=True)
    m.feed(b"* OK ready.\r\n")
    assert m.feed(b"L OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n") == \
        [LoggedIn(b"* CAPABILITY IMAP4rev1 IDLE\r\nb OK Logged in\r\n")]


def test_imap_starttls_master_user_and_refusal() -> None:
    m = ImapBackendLogin(ProxyTarget("h", 143, "u", "pw", master="admin", starttls=True),
                         "c", CLIENT)
    assert m.feed(BANNER) == [Send(b"S STARTTLS\r\n")]
    assert m.feed(b"S OK Begin TLS negotiation now.\r\n") == [StartBackendTls()]
    [send] = m.tls_started()
    assert isinstance(send, Send) and send.data.endswith(b"L AUTHENTICATE PLAIN\r\n")
    assert m.feed(b"+ \r\n") == [Send(base64.b64encode(b"u\0admin\0pw") + b"\r\n")]
    assert m.feed(b"L NO [AUTHENTICATIONFAILED] Authentication failed.\r\n") == [LoginRefused(
        b"c NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
        "[AUTHENTICATIONFAILED] Authentication failed.")]


def test_pop3_xclient_and_login() -> None:
    m = Pop3BackendLogin(ProxyTarget("h", 110, "u", "p"), CLIENT)
    assert m.feed(b"+OK [XCLIENT] ready.\r\n") == [Send(
        b"XCLIENT ADDR=10.0.0.9 PORT=5555 SESSION=sess1 TTL=4\r\nUSER u\r\n")]
    assert m.feed(b"+OK Updated\r\n+OK\r\n") == [Send(b"PASS p\r\n")]
    assert m.feed(b"+OK Logged in.\r\n") == [LoggedIn(b"+OK Logged in.\r\n")]
    m = Pop3BackendLogin(ProxyTarget("h", 110, "u", "p"), CLIENT)
    m.feed(b"+OK ready.\r\n")
    assert m.feed(b"+OK\r\n-ERR [AUTH] Authentication failed.\r\n") == [Send(b"PASS p\r\n"),
        LoginRefused(b"-ERR [AUTH] Authentication failed.\r\n",
                     "[AUTH] Authentication failed.")]


def test_sasl_without_initial_response() -> None:
    """A backend without SASL-IR gets the PLAIN message at its continuation; LOGIN answers
    the prompts with the user, then the password; bad base64 is a broken backend."""
    m = ImapBackendLogin(ProxyTarget("h", 143, "u", "pw", mech="PLAIN"), "d", CLIENT)
    assert m.feed(b"* OK ready.\r\n") == [Send(b"L AUTHENTICATE PLAIN\r\n")]
    assert m.feed(b"+ \r\n") == [Send(base64.b64encode(b"u\0u\0pw") + b"\r\n")]
    m = ImapBackendLogin(ProxyTarget("h", 143, "u", "pw", mech="LOGIN"), "d", CLIENT)
    assert m.feed(b"* OK [CAPABILITY IMAP4rev1 SASL-IR] ready.\r\n") == [
        Send(b"L AUTHENTICATE LOGIN =\r\n")]
    assert m.feed(b"+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n") == [
        Send(b"dQ==\r\n"), Send(b"cHc=\r\n")]
    assert m.feed(b"+ !!\r\n") == [BackendBroken(
        "Server sent invalid base64 data in AUTHENTICATE response")]
    m2 = Pop3BackendLogin(ProxyTarget("h", 110, "u", "pw", mech="LOGIN", nopipelining=True),
                          CLIENT)
    assert m2.feed(b"+OK [XCLIENT] ready.\r\n") == [Send(
        b"XCLIENT ADDR=10.0.0.9 PORT=5555 SESSION=sess1 TTL=4\r\n")]
    assert m2.feed(b"+OK\r\n") == [Send(b"AUTH LOGIN =\r\n")]
    assert m2.feed(b"+ VXNlcm5hbWU6\r\n") == [Send(b"dQ==\r\n")]


def test_proxy_fields_parsed() -> None:
    fields = {"proxy": "", "host": "h", "proxy_mech": "plain", "proxy_nopipelining": "",
              "proxy_refresh": "30", "proxy_always": ""}
    target = proxy_target(fields, protocol="imap", user="u", password="p")
    assert target is not None and (target.mech, target.nopipelining, target.refresh,
                                   target.always) == ("PLAIN", True, 30, True)
    for bad, message in (({"proxy_mech": "CRAM-MD5"}, "Unsupported SASL mechanism CRAM-MD5"),
                         ({"proxy_refresh": "x"}, "invalid proxy_refresh value: x")):
        with pytest.raises(ValueError, match=message):
            proxy_target({"proxy": "", "host": "h", **bad}, protocol="imap", user="u",
                         password="p")
    # A master user logs in with AUTH PLAIN even without proxy_mech.
    target = proxy_target({"proxy": "", "host": "h", "master": "m"}, protocol="pop3",
                          user="u", password="p")
    assert target is not None
    assert Pop3BackendLogin(target, CLIENT).feed(b"+OK ready.\r\n") == [
        Send(b"AUTH PLAIN " + base64.b64encode(b"u\0m\0p") + b"\r\n")]


def test_bad_banners() -> None:
    [broken] = ImapBackendLogin(ProxyTarget("h", 1, "u", "p"), "a", CLIENT).feed(b"+OK x\r\n")
    assert broken == BackendBroken("Remote server sent invalid input: Invalid banner: +OK x")
    [broken] = Pop3BackendLogin(ProxyTarget("h", 1, "u", "p"), CLIENT).feed(b"* OK x\r\n")
    assert isinstance(broken, BackendBroken)


@given(st.text(max_size=30))
def test_imap_quote_round_trip(value: str) -> None:
    quoted = imap_quote(value)
    if quoted.startswith(b'"'):
        inner = quoted[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
        assert inner.decode() == value
    else:
        head, _, body = quoted.partition(b"\r\n")
        assert head == b"{%d+}" % len(value.encode()) and body.decode() == value


def test_forwarded_fields() -> None:
    assert from_imap_id(((b"x-originating-ip", b"10.1.1.1"), (b"x-originating-port", b"7"),
                         (b"x-session-id", b"s"), (b"name", b"x"))) == \
        Forwarded(remote_ip="10.1.1.1", remote_port=7, session="s")
    assert from_imap_id(((b"x-originating-ip", b"bogus"),)) == Forwarded()
    assert from_xclient("ADDR=10.1.2.4 FORWARD=abc") == (Forwarded(remote_ip="10.1.2.4"), False)
    assert from_xclient("") == (Forwarded(), True)


def test_disconnect_spreader() -> None:
    spread = DisconnectSpreader(2.0)
    backend = ("h", 143)
    for _ in range(4):
        spread.started(backend)
    delays = []
    for _ in range(4):
        spread.ended(backend)
        delays.append(spread.delay(backend, 100.0))
    assert delays[0] == 0.0 and delays == sorted(delays) and delays[-1] > 0
    assert DisconnectSpreader(0).delay(backend, 1.0) == 0.0
