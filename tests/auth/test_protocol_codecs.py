"""The auth-client and auth-master codecs on byte strings: handshakes, requests, chunking."""

from __future__ import annotations

import base64
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from cote.auth.protocol import auth_client as ac
from cote.auth.protocol import auth_master as am
from cote.auth.protocol.escape import (
    decode,
    encode,
    escape_bytes,
    join_line,
    split_line,
    unescape_bytes,
)

MECHS = ["PLAIN", "LOGIN", "CRAM-MD5"]


def handshaken_server() -> ac.ServerConnection:
    conn = ac.ServerConnection(MECHS)
    events = conn.feed(b"VERSION\t1\t2\nCPID\t4242\n")
    assert events == [ac.ClientVersion(1, 2), ac.ClientPid(4242)]
    return conn


# -- escaping ------------------------------------------------------------------------------


def test_escape_uses_0x01_for_the_four_special_bytes() -> None:
    assert escape_bytes(b"a\x01b\tc\rd\ne") == b"a\x011b\x01tc\x01rd\x01ne"
    assert unescape_bytes(b"a\x011b\x01tc\x01rd\x01ne\x010") == b"a\x01b\tc\rd\ne\0"
    assert join_line(["USER", "1", "we\tird"]) == b"USER\t1\twe\x01tird\n"


@given(st.binary())
def test_escape_round_trips_and_never_leaves_tab_or_newline(value: bytes) -> None:
    escaped = escape_bytes(value)
    assert b"\t" not in escaped and b"\n" not in escaped and b"\r" not in escaped
    assert unescape_bytes(escaped) == value


@given(st.lists(st.text(), min_size=1, max_size=6))
def test_lines_round_trip_any_fields(fields: list[str]) -> None:
    line = join_line(fields)
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert split_line(line[:-1]) == fields
    for f in fields:
        assert decode(encode(f)) == f


# -- auth-client server side ----------------------------------------------------------------


def test_server_handshake_lines_match_dovecots_shape() -> None:
    out = ac.ServerConnection.handshake(
        [ac.MechanismInfo("PLAIN", ac.MechFlag.PLAINTEXT),
         ac.MechanismInfo("APOP", ac.MechFlag.PRIVATE | ac.MechFlag.DICTIONARY | ac.MechFlag.ACTIVE),
         ac.MechanismInfo("EXTERNAL")],
        spid=77, cuid=3, cookie=bytes(range(16)))
    assert out == (b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tAPOP\tprivate\tdictionary\tactive\n"
                   b"MECH\tEXTERNAL\nSPID\t77\nCUID\t3\nCOOKIE\t000102030405060708090a0b0c0d0e0f\n"
                   b"DONE\n")


def test_auth_with_all_params_and_initial_response() -> None:
    conn = handshaken_server()
    line = (b"AUTH\t7\tplain\tservice=smtp\tlip=127.0.0.1\trip=10.0.0.1\tlport=25\trport=5555\t"
            b"local_name=mx.example\tsession=abc\tclient_id=x\tsecured=tls\tvalid-client-cert\t"
            b"no-penalty\tnologin\tfinal-resp-ok\tdebug\tsomething=new\tresp=AHUAcA==\n")
    [event] = conn.feed(line)
    assert isinstance(event, ac.AuthBegin)
    assert (event.id, event.mechanism, event.service) == (7, "PLAIN", "smtp")
    assert event.initial_response == b"\0u\0p"
    assert event.params["rip"] == "10.0.0.1" and event.params["lport"] == "25"
    assert event.params["something"] == "new" and event.secured
    assert event.flags == {"valid-client-cert", "no-penalty", "nologin", "final-resp-ok", "debug"}
    assert conn.active == {7}
    assert conn.ok(7, "u", {"nologin": None, "proxy": None}) == b"OK\t7\tuser=u\tnologin\tproxy\n"
    assert conn.active == set()


def test_empty_resp_differs_from_no_resp() -> None:
    conn = handshaken_server()
    [a, b] = conn.feed(b"AUTH\t1\tPLAIN\tservice=imap\tresp=\nAUTH\t2\tPLAIN\tprotocol=imap\n")
    assert isinstance(a, ac.AuthBegin) and a.initial_response == b""
    assert isinstance(b, ac.AuthBegin) and b.initial_response is None and b.service == "imap"


def test_client_may_speak_first_and_server_handshake_is_independent() -> None:
    conn = ac.ServerConnection(MECHS)
    assert conn.feed(b"VERSION\t1\t1\n") == [ac.ClientVersion(1, 1)]
    assert not conn.handshake_done
    assert conn.feed(b"CPID\t9\n") == [ac.ClientPid(9)]
    assert conn.handshake_done


def test_cont_cancel_and_replies() -> None:
    conn = handshaken_server()
    conn.feed(b"AUTH\t1\tLOGIN\tservice=imap\n")
    assert conn.cont(1, b"Username:") == b"CONT\t1\tVXNlcm5hbWU6\n"
    assert conn.feed(b"CONT\t1\tdXNlcjE=\n") == [ac.AuthContinue(1, b"user1")]
    assert conn.feed(b"CANCEL\t1\n") == [ac.AuthCancel(1)]
    assert conn.feed(b"CANCEL\t1\n") == []
    # CONT for a request that is gone: Dovecot answers a timeout failure itself.
    assert conn.feed(b"CONT\t1\tAAAA\n") == [
        ac.Reply(b"FAIL\t1\treason=Authentication request timed out\n")]
    conn.feed(b"AUTH\t2\tPLAIN\tservice=imap\n")
    assert conn.fail(2, user="u1", code="temp_fail", reason="x\ty") == \
        b"FAIL\t2\tuser=u1\tcode=temp_fail\treason=x\x01ty\n"


def test_invalid_base64_fails_the_request_without_disconnecting() -> None:
    conn = handshaken_server()
    assert conn.feed(b"AUTH\t1\tPLAIN\tservice=imap\tresp=!!!\n") == [ac.Reply(
        b"FAIL\t1\tcode=invalid_base64\treason=Invalid base64 data in initial response\n")]
    assert not conn.closed and conn.active == set()


def test_protocol_violations_disconnect_with_dovecots_reason() -> None:
    cases = {
        b"AUTH\t1\tFOO\tservice=imap\n": "unsupported authentication mechanism FOO",
        b"AUTH\t1\tPLAIN\n": "didn't specify service",
        b"AUTH\t0\tPLAIN\tservice=imap\n": "broken AUTH request",
        b"AUTH\t1\tPLAIN\tservice=imap\nAUTH\t1\tPLAIN\tservice=imap\n": "duplicate ID 1",
        b"AUTH\t1\tPLAIN\tservice=imap\tresp=AA==\tlip=1.2.3.4\n": "parameters after 'resp'",
        b"FOO\tbar\n": "unknown command: FOO?bar",
        b"\n": "unknown command",
    }
    for data, reason in cases.items():
        conn = handshaken_server()
        events = conn.feed(data)
        assert isinstance(events[-1], ac.Disconnect) and reason in events[-1].reason, data
        assert conn.closed and conn.feed(b"AUTH\t9\tPLAIN\tservice=imap\n") == []


def test_handshake_order_is_enforced() -> None:
    conn = ac.ServerConnection(MECHS)
    [event] = conn.feed(b"AUTH\t1\tPLAIN\tservice=imap\n")
    assert isinstance(event, ac.Disconnect)
    conn = ac.ServerConnection(MECHS)
    [_, event] = conn.feed(b"VERSION\t1\t2\nAUTH\t1\tPLAIN\tservice=imap\n")
    assert isinstance(event, ac.Disconnect) and "handshake" in event.reason
    conn = ac.ServerConnection(MECHS)
    [event] = conn.feed(b"VERSION\t2\t0\n")
    assert isinstance(event, ac.Disconnect) and "not compatible" in event.reason


def test_crlf_line_ends_are_accepted_like_dovecot() -> None:
    conn = ac.ServerConnection(MECHS)
    events = conn.feed(b"VERSION\t1\t2\r\nCPID\t5\r\nAUTH\t1\tPLAIN\tservice=imap\tresp=AHUAcA==\r\n")
    assert events[:2] == [ac.ClientVersion(1, 2), ac.ClientPid(5)]
    assert isinstance(events[2], ac.AuthBegin) and events[2].initial_response == b"\0u\0p"
    master = am.ServerConnection()
    assert master.feed(b"VERSION\t1\t0\r\nUSER\t1\tu\tservice=imap\r\n")[1] == \
        am.UserLookup(1, "u", {"service": "imap"})


def test_lines_before_an_oversized_one_are_still_handled() -> None:
    conn = handshaken_server()
    events = conn.feed(b"AUTH\t1\tPLAIN\tservice=imap\n" + b"X" * 20000)
    assert isinstance(events[0], ac.AuthBegin)
    assert events[1] == ac.Disconnect("BUG: Auth client sent us more than 16384 bytes")
    assert conn.feed(b"\nCANCEL\t1\n") == []


def test_oversized_line_disconnects_even_without_newline() -> None:
    conn = handshaken_server()
    events = conn.feed(b"AUTH\t1\tPLAIN\tservice=imap\tresp=" + b"A" * 20000)
    assert events == [ac.Disconnect("BUG: Auth client sent us more than 16384 bytes")]
    conn = handshaken_server()
    ok_line = b"AUTH\t1\tPLAIN\tservice=imap\tresp=" + b"A" * (16384 - 32) + b"\n"
    assert len(ok_line) - 1 <= 16384
    [event] = conn.feed(ok_line)
    assert isinstance(event, ac.AuthBegin)


STREAM = (b"VERSION\t1\t2\nCPID\t1\nAUTH\t1\tPLAIN\tservice=imap\tlip=::1\tresp=AHUAcA==\n"
          b"AUTH\t2\tLOGIN\tservice=pop3\tsecured\nCONT\t2\tdXNlcg==\nCANCEL\t2\n"
          b"AUTH\t3\tCRAM-MD5\tservice=smtp\tsession=a\x01tb\n")


@settings(max_examples=200)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_server_events_do_not_depend_on_chunking(cuts: list[int]) -> None:
    whole = ac.ServerConnection(MECHS).feed(STREAM)
    conn = ac.ServerConnection(MECHS)
    events: list[ac.ServerEvent] = []
    bounds = [0, *sorted(cuts), len(STREAM)]
    for a, b in itertools.pairwise(bounds):
        events += conn.feed(STREAM[a:b])
    assert events == whole
    assert len(whole) == 7
    last = whole[-1]
    assert isinstance(last, ac.AuthBegin) and last.params["session"] == "a\tb"


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_garbage_never_raises(data: bytes) -> None:
    conn = ac.ServerConnection(MECHS, max_line=128)
    conn.feed(b"VERSION\t1\t2\nCPID\t1\n" + data)
    ac.ServerConnection(MECHS).feed(data)
    ac.ClientConnection(max_line=128).feed(data)
    am.ServerConnection(max_line=128).feed(b"VERSION\t1\t0\n" + data)
    am.ClientConnection(max_line=128).feed(b"VERSION\t1\t1\nSPID\t1\n" + data)


# -- auth-client client side ----------------------------------------------------------------


def test_client_parses_server_handshake_and_replies() -> None:
    client = ac.ClientConnection()
    server_bytes = ac.ServerConnection.handshake(
        [ac.MechanismInfo("PLAIN", ac.MechFlag.PLAINTEXT),
         ac.MechanismInfo("SCRAM-SHA-1", ac.MechFlag.MUTUAL_AUTH)],
        spid=5, cuid=6, cookie=b"\xaa" * 16)
    [hs] = client.feed(server_bytes)
    assert isinstance(hs, ac.ServerHandshake)
    assert [m.name for m in hs.mechanisms] == ["PLAIN", "SCRAM-SHA-1"]
    assert hs.mechanisms[1].flags == ac.MechFlag.MUTUAL_AUTH
    assert (hs.spid, hs.cuid, hs.cookie) == (5, 6, b"\xaa" * 16)
    events = client.feed(b"CONT\t1\t\nOK\t1\tuser=u\tproxy\thost=h\nFAIL\t2\tcode=temp_fail\t"
                         b"user=x\treason=r\n")
    assert events[0] == ac.Continue(1, b"")
    assert events[1] == ac.Success(1, "u", {"proxy": "", "host": "h"})
    fail = events[2]
    assert isinstance(fail, ac.Failure)
    assert (fail.code, fail.user, fail.reason) == ("temp_fail", "x", "r")
    assert ac.ClientConnection.auth(3, "PLAIN", service="imap", params={"rip": "1.2.3.4"},
                                    flags=["secured"], initial_response=b"\0a\0b") == \
        b"AUTH\t3\tPLAIN\tservice=imap\trip=1.2.3.4\tsecured\tresp=AGEAYg==\n"


# -- auth-master --------------------------------------------------------------------------


def test_master_server_requests_and_replies() -> None:
    conn = am.ServerConnection()
    assert am.ServerConnection.handshake(12) == b"VERSION\t1\t1\nSPID\t12\n"
    events = conn.feed(b"VERSION\t1\t0\nUSER\t1\tuser1\tservice=imap\trip=1.2.3.4\n"
                       b"PASS\t2\tuser1\tservice=imap\nLIST\t3\tuser=u*\n"
                       b"REQUEST\t4\t100\t7\t" + b"ab" * 16 + b"\tsession_pid=9\n"
                       b"CACHE-FLUSH\t5\tuser1\tuser2\nCACHE-FLUSH\t6\n")
    assert events == [
        am.MasterVersion(1, 0),
        am.UserLookup(1, "user1", {"service": "imap", "rip": "1.2.3.4"}),
        am.PassLookup(2, "user1", {"service": "imap"}),
        am.ListUsers(3, {"user": "u*"}),
        am.LoginRequest(4, 100, 7, "ab" * 16, {"session_pid": "9"}),
        am.CacheFlush(5, ("user1", "user2")),
        am.CacheFlush(6, ()),
    ]
    assert am.ServerConnection.user(1, "user1", {"uid": "1000", "home": "/h"}) == \
        b"USER\t1\tuser1\tuid=1000\thome=/h\n"
    assert am.ServerConnection.passdb(2, "user1") == b"PASS\t2\tuser=user1\n"
    assert am.ServerConnection.list_done(3) == b"DONE\t3\t\n"
    assert am.ServerConnection.list_done(3, failed=True) == b"DONE\t3\tfail\n"
    assert am.ServerConnection.cache_flushed(5, 2) == b"OK\t5\t2\n"
    assert am.ServerConnection.fail(4) == b"FAIL\t4\n"


def test_master_server_rejects_unknown_commands_and_missing_version() -> None:
    conn = am.ServerConnection()
    [event] = conn.feed(b"USER\t1\tu\n")
    assert isinstance(event, am.Disconnect) and "not compatible" in event.reason
    conn = am.ServerConnection()
    [_, event] = conn.feed(b"VERSION\t1\t0\nBOGUS\t7\n")
    assert event == am.Disconnect("BUG: Unknown command in master socket: BOGUS?7")
    conn = am.ServerConnection()
    [_, event] = conn.feed(b"VERSION\t1\t0\nUSER\tx\tu\n")
    assert isinstance(event, am.Disconnect)


def test_master_client_parses_every_reply() -> None:
    client = am.ClientConnection()
    events = client.feed(b"VERSION\t1\t1\nSPID\t77\nUSER\t1\tu\tuid=5\tquota_rule=*:storage=1G\n"
                         b"NOTFOUND\t2\nPASS\t3\tuser=u\tnologin\nFAIL\t4\treason=x\n"
                         b"LIST\t5\tu\nDONE\t5\t\nOK\t6\t3\n")
    assert events == [am.ServerHello(1, 1, 77),
                      am.UserReply(1, "u", {"uid": "5", "quota_rule": "*:storage=1G"}),
                      am.NotFound(2), am.PassReply(3, {"user": "u", "nologin": ""}),
                      am.Failure(4, "x"), am.ListEntry(5, "u"), am.ListDone(5, False),
                      am.CacheFlushed(6, 3)]
    assert am.ClientConnection.request(1, 2, 3, b"\x01" * 16) == \
        b"REQUEST\t1\t2\t3\t" + b"01" * 16 + b"\n"


def test_base64_in_codec_is_standard() -> None:
    data = bytes(range(256))
    line = ac.ClientConnection.cont(1, data)
    conn = handshaken_server()
    conn.feed(b"AUTH\t1\tPLAIN\tservice=imap\n")
    assert conn.feed(line) == [ac.AuthContinue(1, data)]
    assert line == b"CONT\t1\t" + base64.b64encode(data) + b"\n"


MASTER_STREAM = (b"VERSION\t1\t0\nUSER\t1\tu\x01t1\tservice=imap\nPASS\t2\tu\tservice=pop3\n"
                 b"LIST\t3\tuser=*\nREQUEST\t4\t10\t1\t" + b"00" * 16 + b"\nCACHE-FLUSH\t5\n")


@settings(max_examples=200)
@given(st.lists(st.integers(min_value=0, max_value=len(MASTER_STREAM)), max_size=12))
def test_master_events_do_not_depend_on_chunking(cuts: list[int]) -> None:
    whole = am.ServerConnection().feed(MASTER_STREAM)
    assert len(whole) == 6 and whole[1] == am.UserLookup(1, "u\t1", {"service": "imap"})
    conn = am.ServerConnection()
    events: list[am.ServerEvent] = []
    bounds = [0, *sorted(cuts), len(MASTER_STREAM)]
    for a, b in itertools.pairwise(bounds):
        events += conn.feed(MASTER_STREAM[a:b])
    assert events == whole


@settings(max_examples=100)
@given(st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_client_end_parses_chunked_server_output(cuts: list[int]) -> None:
    stream = ac.ServerConnection.handshake(
        [ac.MechanismInfo("PLAIN", ac.MechFlag.PLAINTEXT)], spid=1, cuid=2,
        cookie=b"\x11" * 16) + b"CONT\t1\tAA==\nOK\t1\tuser=a\x01tb\nFAIL\t2\treason=x\n"
    whole = ac.ClientConnection().feed(stream)
    assert [type(e) for e in whole] == [ac.ServerHandshake, ac.Continue, ac.Success, ac.Failure]
    assert whole[2] == ac.Success(1, "a\tb", {})
    conn = ac.ClientConnection()
    events: list[ac.ClientEvent] = []
    bounds = [0, *sorted(c for c in cuts if c <= len(stream)), len(stream)]
    for a, b in itertools.pairwise(bounds):
        events += conn.feed(stream[a:b])
    assert events == whole


def test_master_request_limit_is_dovecots_1024_bytes() -> None:
    conn = am.ServerConnection()
    ok = b"USER\t1\t" + b"u" * (1023 - 20) + b"\tservice=imap\n"
    assert len(ok) == 1024
    assert isinstance(conn.feed(b"VERSION\t1\t0\n" + ok)[-1], am.UserLookup)
    conn = am.ServerConnection()
    too_long = b"USER\t1\t" + b"u" * (1024 - 20) + b"\tservice=imap\n"
    assert conn.feed(b"VERSION\t1\t0\n" + too_long)[-1] == \
        am.Disconnect("BUG: Master sent us more than 1024 bytes")
