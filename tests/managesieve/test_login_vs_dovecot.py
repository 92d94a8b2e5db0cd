"""managesieve-login answers as Dovecot's (Pigeonhole 0.5) does, byte for byte.

Every dialogue runs against Dovecot and cote on the same config (TLS available, plaintext
auth only on secured connections) and the transcripts must be equal: greeting, CAPABILITY,
NOOP, bad commands up to BYE, LOGOUT, STARTTLS (capabilities re-sent), AUTHENTICATE with an
initial response, with a continuation (quoted and literal forms), aborted and with bad
base64, plaintext refused from a non-local address, and commands pipelined behind a login.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator

import pytest

from tests.managesieve.support import Pair, SieveClient, plain, server_pair
from tests.support.dovecot import dovecot_available

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(not dovecot_available(), reason="Dovecot is not installed")]


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with server_pair() as p:
        yield p


Dialogue = Callable[[SieveClient], list[bytes]]


def both(pair: Pair, dialogue: Dialogue, *, source: str = "127.0.0.1") -> list[bytes]:
    """Run ``dialogue`` on each server; assert equal transcripts; return cote's."""
    transcripts = []
    for name in ("dovecot", "cote"):
        client = SieveClient(pair.ports[name], source=source)
        try:
            transcripts.append([client.greeting, *dialogue(client)])
        finally:
            client.close()
    assert transcripts[1] == transcripts[0]
    return transcripts[1]


def commands(*lines: bytes) -> Dialogue:
    def run(c: SieveClient) -> list[bytes]:
        return [c.command(line) for line in lines]
    return run


def test_greeting_capability_noop_logout(pair: Pair) -> None:
    out = both(pair, commands(b"CAPABILITY\r\n", b"NOOP\r\n", b'NOOP "tag"\r\n',
                              b"NOOP {3+}\r\nabc\r\n", b"NOOP x\r\n", b"capability\r\n",
                              b"LOGOUT\r\n"))
    greeting = out[0]
    assert greeting.startswith(b'"IMPLEMENTATION" "Dovecot (Debian) Pigeonhole"\r\n')
    assert b'"SASL" "PLAIN LOGIN"\r\n"STARTTLS"\r\n"VERSION" "1.0"\r\n' in greeting
    assert greeting.endswith(b'OK "Dovecot (Debian) ready."\r\n')
    assert out[3] == b'OK (TAG "tag") "Done"\r\n'
    assert out[-1] == b'OK "Logout completed."\r\n'


def test_bad_commands_end_with_bye(pair: Pair) -> None:
    def run(c: SieveClient) -> list[bytes]:
        # a good command in between does not start the count again
        out = [c.command(x) for x in (b"FOO\r\n", b"LISTSCRIPTS\r\n", b"NOOP\r\n",
                                      b"CAPABILITY x\r\n")]
        out.append(b"closed" if c.closed() else b"open")
        return out
    out = both(pair, run)
    assert out[-2] == b'BYE "Too many invalid MANAGESIEVE commands."\r\n'
    assert out[-1] == b"closed"


def test_starttls_resends_capabilities(pair: Pair) -> None:
    def run(c: SieveClient) -> list[bytes]:
        return [c.starttls(), c.command(b"CAPABILITY\r\n"), c.command(b"STARTTLS\r\n")]
    out = both(pair, run, source="127.0.0.2")
    assert out[3] == b'NO "TLS is already active."\r\n'
    assert out[1].endswith(b'OK "TLS negotiation successful."\r\n')
    assert b'"SASL" "PLAIN LOGIN"' in out[1] and b'"STARTTLS"' not in out[1]


def test_plaintext_refused_without_tls(pair: Pair) -> None:
    def run(c: SieveClient) -> list[bytes]:
        return [c.command(f'AUTHENTICATE "PLAIN" "{plain("user1", "pass1")}"\r\n'.encode()),
                c.command(b'AUTHENTICATE "LOGIN"\r\n'), c.command(b'AUTHENTICATE "FOO"\r\n')]
    out = both(pair, run, source="127.0.0.2")
    assert b'"SASL" ""\r\n' in out[0]
    assert out[1] == b'NO "Plaintext authentication disabled."\r\n'
    assert out[3] == b'NO "Unsupported authentication mechanism."\r\n'


def test_login_with_initial_response_and_pipelined_commands(pair: Pair) -> None:
    pair.reset_home("user1")

    def run(c: SieveClient) -> list[bytes]:
        # One write: the login and what follows travel to the mail process together.
        c.send(f'AUTHENTICATE "PLAIN" "{plain("user1", "pass1")}"\r\n'
               'LISTSCRIPTS\r\nNOOP "after"\r\nLOGOUT\r\n'.encode())
        return [c.response() for _ in range(4)]
    out = both(pair, run)
    assert out[1:] == [b'OK "Logged in."\r\n', b'OK "Listscripts completed."\r\n',
                       b'OK (TAG "after") "Done"\r\n', b'OK "Logout completed."\r\n']


@pytest.mark.parametrize("form", ["quoted", "literal"])
def test_login_with_continuation(pair: Pair, form: str) -> None:
    token = plain("user2", "pass2")
    answer = f'"{token}"\r\n' if form == "quoted" else f"{{{len(token)}+}}\r\n{token}\r\n"

    def run(c: SieveClient) -> list[bytes]:
        c.send(b'AUTHENTICATE "PLAIN"\r\n')
        challenge = c.line()
        c.send(answer.encode())
        return [challenge, c.response(), c.command(b"LOGOUT\r\n")]
    out = both(pair, run)
    assert out[1:] == [b'""\r\n', b'OK "Logged in."\r\n', b'OK "Logout completed."\r\n']


def test_login_mechanism_challenges(pair: Pair) -> None:
    def run(c: SieveClient) -> list[bytes]:
        c.send(b'AUTHENTICATE "LOGIN"\r\n')
        first = c.line()
        c.send(b'"dXNlcjE="\r\n')  # user1
        second = c.line()
        c.send(b'"cGFzczE="\r\n')  # pass1
        return [first, second, c.response(), c.command(b"LOGOUT\r\n")]
    out = both(pair, run)
    assert out[1:3] == [b'"VXNlcm5hbWU6"\r\n', b'"UGFzc3dvcmQ6"\r\n']
    assert out[3] == b'OK "Logged in."\r\n'


@pytest.mark.parametrize("answer", [b'"*"\r\n', b'"!!!"\r\n', b"*\r\n"])
def test_aborted_and_invalid_responses(pair: Pair, answer: bytes) -> None:
    def run(c: SieveClient) -> list[bytes]:
        c.send(b'AUTHENTICATE "PLAIN"\r\n')
        return [c.line(), c.command(answer), c.command(b"LOGOUT\r\n")]
    both(pair, run)


def test_invalid_initial_response(pair: Pair) -> None:
    out = both(pair, commands(b'AUTHENTICATE "PLAIN" "!!"\r\n', b"NOOP\r\n",
                              b"LOGOUT\r\n"))
    assert out[1] == b'NO "Invalid base64 data in initial response"\r\n'


def test_failed_login_is_delayed_and_logged(pair: Pair) -> None:
    bad = f'AUTHENTICATE "PLAIN" "{plain("user1", "wrong")}"\r\n'.encode()
    elapsed = {}

    def run(c: SieveClient) -> list[bytes]:
        started = time.monotonic()
        reply = c.command(bad)
        elapsed[c.sock.getpeername()[1]] = time.monotonic() - started
        return [reply, c.command(b"LOGOUT\r\n")]
    out = both(pair, run)
    assert out[1] == b'NO "Authentication failed."\r\n'
    # auth_failure_delay (2 s) holds the answer back in both servers
    assert all(secs >= 1.5 for secs in elapsed.values()), elapsed
    needle = "managesieve-login: Info: Disconnected: Aborted login by logging out (auth failed, 1"
    line = pair.cote.wait_for_log(needle)
    assert line and "user=<user1>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, secured" \
        in line[-1], line
    assert needle in pair.dovecot.log_path.read_text()


def test_login_log_line_matches_dovecot(pair: Pair) -> None:
    def run(c: SieveClient) -> list[bytes]:
        return [c.command(f'AUTHENTICATE "PLAIN" "{plain("user2", "pass2")}"\r\n'.encode()),
                c.command(b"LOGOUT\r\n")]
    both(pair, run)
    time.sleep(0.3)
    shape = re.compile(r"managesieve-login: Info: Login: user=<user2>, method=PLAIN, "
                       r"rip=127\.0\.0\.1, lip=127\.0\.0\.1, mpid=\d+, secured, session=<\S+>")
    dovecot_log = pair.dovecot.log_path.read_text()
    assert shape.search(dovecot_log)
    assert shape.search(pair.cote.log_text()), pair.cote.log_text()[-2000:]


@pytest.mark.parametrize("line", [b'NOOP "' + b"t" * 1025 + b'"\r\n',
                                  b"NOOP " + b"x" * 70000 + b"\r\n"])
def test_long_arguments_end_the_connection(pair: Pair, line: bytes) -> None:
    def run(c: SieveClient) -> list[bytes]:
        out = [c.command(b'NOOP "' + b"t" * 1024 + b'"\r\n')]
        try:
            out.append(c.command(line))
        except ConnectionResetError:
            out.append(b"reset")  # closed while the client was still sending
        return out
    out = both(pair, run)
    assert out[-1] in (b'BYE "Input buffer full, aborting"\r\n', b"reset")


def test_pipelined_after_starttls(pair: Pair) -> None:
    """Behind TLS the login process relays: commands sent with the login all arrive. (Not
    compared: Dovecot 2.3.19 hands the mail process a cut-off PUTSCRIPT here and closes,
    logging "Connection closed (While appending in PUTSCRIPT/CHECKSCRIPT)".)"""
    pair.reset_home("user2")
    c = SieveClient(pair.ports["cote"], source="127.0.0.2")
    try:
        c.starttls()
        c.send(f'AUTHENTICATE "PLAIN" "{plain("user2", "pass2")}"\r\n'
               'PUTSCRIPT "p" "keep;"\r\nLISTSCRIPTS\r\nLOGOUT\r\n'.encode())
        out = [c.response() for _ in range(4)]
    finally:
        c.close()
    assert out == [b'OK "Logged in."\r\n', b'OK "PUTSCRIPT completed."\r\n',
                   b'"p"\r\nOK "Listscripts completed."\r\n', b'OK "Logout completed."\r\n']


@pytest.mark.parametrize("line", [b'NOOP  "b" \r\n', b" NOOP\r\n", b"\r\n", b'NOOP "a\\x"\r\n',
                                  b"NOOP {x}\r\n", b'NOOP "a"x\r\n', b'NOOP a"b\r\n',
                                  b'NOOP "\xff"\r\n', b"noop\n", b'NOOP "a\r\n'])
def test_malformed_lines_before_login(pair: Pair, line: bytes) -> None:
    both(pair, commands(line, b"NOOP\r\n"))


LOGIN_COMMANDS = [b"CAPABILITY\r\n", b"capability x\r\n", b"NOOP\r\n", b'NOOP "t"\r\n',
                  b"NOOP {2+}\r\nab\r\n", b"NOOP x\r\n", b'AUTHENTICATE "FOO"\r\n',
                  b'AUTHENTICATE "PLAIN" "!"\r\n', b"AUTHENTICATE\r\n", b"AUTHENTICATE x\r\n",
                  b"FOO\r\n", b"LISTSCRIPTS\r\n", b"STARTTLS x\r\n", b'NOOP "a" "b"\r\n',
                  b"\r\n", b'NOOP "\\q"\r\n']


def test_random_pre_login_sequences(pair: Pair) -> None:
    """40 connections of up to 6 commands drawn from the list above (BYE ends some)."""
    r = random.Random(5804)
    for _ in range(40):
        sequence = [r.choice(LOGIN_COMMANDS) for _ in range(r.randint(1, 6))]

        def run(c: SieveClient, sequence: list[bytes] = sequence) -> list[bytes]:
            out = []
            for line in sequence:
                reply = c.command(line)
                out.append(reply)
                if reply.startswith(b"BYE"):
                    break
            return out
        both(pair, run)
