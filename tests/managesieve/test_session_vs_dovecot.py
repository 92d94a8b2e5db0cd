"""The managesieve mail process answers as Pigeonhole's does, on the same stored scripts.

Each session runs on Dovecot and on cote, starting from the same (emptied) home, and every
reply must be equal; then each server must list and return what the other stored, the
layout on disk being Pigeonhole's (``~/sieve/NAME.sieve``, ``~/.dovecot.sieve`` a relative
symlink to the active one).
"""

from __future__ import annotations

import os
import random
import re
import smtplib
import time
from collections.abc import Iterator

import pytest

from tests.managesieve.support import Pair, SieveClient, plain, server_pair
from tests.support.dovecot import dovecot_available

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(not dovecot_available(), reason="Dovecot is not installed")]

USER = "user1"


# Dovecot's LMTP runs the active script: proof that what cote stores is what delivery reads.
LMTP_SIEVE = """
lda_mailbox_autocreate = yes
protocol lmtp {
  mail_plugins = $mail_plugins sieve
}
"""


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with server_pair(dovecot_extra=LMTP_SIEVE) as p:
        yield p


def login(pair: Pair, server: str, user: str = USER, password: str = "pass1") -> SieveClient:
    client = SieveClient(pair.ports[server])
    reply = client.command(f'AUTHENTICATE "PLAIN" "{plain(user, password)}"\r\n'.encode())
    assert reply == b'OK "Logged in."\r\n', (server, reply)
    return client


def literal(data: bytes) -> bytes:
    return b"{%d+}\r\n" % len(data) + data


def replay(pair: Pair, commands: list[bytes]) -> list[bytes]:
    """The session on each server from an empty home; asserts equal replies."""
    transcripts = []
    for server in ("dovecot", "cote"):
        pair.reset_home(USER)
        client = login(pair, server)
        try:
            transcripts.append([listing(c, client.command(c)) for c in commands])
        finally:
            client.close()
    for command, theirs, ours in zip(commands, *transcripts, strict=True):
        assert ours == theirs, command
    return transcripts[1]


def listing(command: bytes, reply: bytes) -> bytes:
    """LISTSCRIPTS in name order: Pigeonhole lists in directory order."""
    if not command.startswith(b"LISTSCRIPTS\r\n"):
        return reply
    *names, done = reply.splitlines(keepends=True)
    return b"".join(sorted(names)) + done


KEEP = b"keep;\r\n"
FILEINTO = b'require "fileinto";\r\nif header :contains "subject" "x" {\r\n' \
           b'  fileinto "Junk";\r\n}\r\n'



def test_lifecycle(pair: Pair) -> None:
    out = replay(pair, [
        b"CAPABILITY\r\n",
        b"LISTSCRIPTS\r\n",
        b'PUTSCRIPT "first" ' + literal(KEEP) + b"\r\n",
        b'PUTSCRIPT "second" "discard;"\r\n',
        b'PUTSCRIPT "filter" {%d}\r\n' % len(FILEINTO) + FILEINTO + b"\r\n",
        b"LISTSCRIPTS\r\n",
        b'SETACTIVE "second"\r\n',
        b'SETACTIVE "second"\r\n',
        b"LISTSCRIPTS\r\n",
        b'GETSCRIPT "filter"\r\n',
        b'GETSCRIPT "nope"\r\n',
        b'DELETESCRIPT "second"\r\n',
        b'RENAMESCRIPT "second" "active"\r\n',
        b"LISTSCRIPTS\r\n",
        b'RENAMESCRIPT "first" "filter"\r\n',
        b'RENAMESCRIPT "nope" "other"\r\n',
        b'DELETESCRIPT "first"\r\n',
        b'SETACTIVE ""\r\n',
        b'SETACTIVE ""\r\n',
        b'DELETESCRIPT "active"\r\n',
        b'SETACTIVE "nope"\r\n',
        b"LISTSCRIPTS\r\n",
        b'NOOP "x"\r\n',
        b"LOGOUT\r\n",
    ])
    assert out[0].startswith(b'"IMPLEMENTATION"') and b'"MAXREDIRECTS" "4"' in out[0]
    assert out[11] == b'NO (ACTIVE) "Cannot delete the active Sieve script."\r\n'
    assert out[13] == b'"active" ACTIVE\r\n"filter"\r\n"first"\r\nOK "Listscripts completed."\r\n'


def test_quota_and_havespace(pair: Pair) -> None:
    big = b"keep;" + b"#" * 993 + b"\r\n"  # 1000 octets: under the 1k script limit
    out = replay(pair, [
        b'HAVESPACE "a" 100\r\n',
        b'HAVESPACE "a" 1025\r\n',
        b'HAVESPACE "a" 0\r\n',
        b'HAVESPACE "a" x\r\n',
        b'HAVESPACE "a/b" 1\r\n',
        b'PUTSCRIPT "a" ' + literal(big) + b"\r\n",
        b'PUTSCRIPT "b" ' + literal(big) + b"\r\n",
        b'HAVESPACE "c" 100\r\n',
        b'HAVESPACE "b" 1000\r\n',
        b'PUTSCRIPT "c" "keep;"\r\n',
        b'PUTSCRIPT "d" "keep;"\r\n',
        b'DELETESCRIPT "b"\r\n',
        b'PUTSCRIPT "c" "keep;"\r\n',
        b'PUTSCRIPT "d" "keep;"\r\n',
        b'PUTSCRIPT "e" "keep;"\r\n',
        b'HAVESPACE "f" 1\r\n',
        b'PUTSCRIPT "f" "keep;"\r\n',
        b'PUTSCRIPT "big" ' + literal(big + b"#" * 100) + b"\r\n",
        # too large: its octets are skipped, never read as commands
        b'PUTSCRIPT "huge" ' + literal(b'DELETESCRIPT "a"\r\n' * 500) + b"\r\n",
        b'CHECKSCRIPT ' + literal(b"NOOP\r\n" * 1000) + b"\r\n",
        b"LISTSCRIPTS\r\n",
    ])
    assert out[1] == b'NO (QUOTA/MAXSIZE) "Script is too large (max 1024 bytes)."\r\n'
    assert out[7].startswith(b"NO (QUOTA/MAXSTORAGE)")
    assert out[15].startswith(b"NO (QUOTA/MAXSCRIPTS)")


def test_checkscript_and_compile_errors(pair: Pair) -> None:
    out = replay(pair, [
        b'CHECKSCRIPT "keep;"\r\n',
        b'CHECKSCRIPT "keep"\r\n',
        b'CHECKSCRIPT "foo;"\r\n',
        b'CHECKSCRIPT ' + literal(b'require ["fileinto", "bar"];\r\nfileinto "x";\r\n') + b"\r\n",
        b'PUTSCRIPT "bad" ' + literal(b"keep;\r\nfoo;\r\n") + b"\r\n",
        b'PUTSCRIPT "bad" ' + literal(b"if true {\r\n  keep;\r\n") + b"\r\n",
        b'PUTSCRIPT "empty" ""\r\n',
        b'CHECKSCRIPT ""\r\n',
        b'PUTSCRIPT "warn" "keep; # no newline"\r\n',
        b'CHECKSCRIPT "keep; # no newline"\r\n',
        b"LISTSCRIPTS\r\n",
    ])
    assert out[4] == b"NO {117}\r\nbad: line 2: error: unknown command 'foo' (only reported " \
                     b"once at first occurrence).\r\nbad: error: validation failed.\r\n\r\n"


def test_argument_errors(pair: Pair) -> None:
    replay(pair, [
        b"FOO\r\n",
        b"STARTTLS\r\n",
        b'AUTHENTICATE "PLAIN"\r\n',
        b"UNAUTHENTICATE\r\n",
        b'PUTSCRIPT "a" "keep;" x\r\n',
        b'PUTSCRIPT "a"\r\n',
        b"PUTSCRIPT a x\r\n",
        b"GETSCRIPT x\r\n",
        b"GETSCRIPT\r\n",
        b"LISTSCRIPTS x\r\n",
        b"CAPABILITY x\r\n",
        b'PUTSCRIPT "x/y" "keep;"\r\n',
        b'PUTSCRIPT "" "keep;"\r\n',
        b'DELETESCRIPT ""\r\n',
        'PUTSCRIPT "é" "keep;"\r\n'.encode(),
        b"LISTSCRIPTS\r\n",
        b"LOGOUT x\r\n",
    ])


def _store(pair: Pair, server: str, name: str, script: bytes) -> None:
    client = login(pair, server)
    try:
        assert client.command(b'PUTSCRIPT "%s" ' % name.encode() + literal(script)
                              + b"\r\n") == b'OK "PUTSCRIPT completed."\r\n'
        assert client.command(b'SETACTIVE "%s"\r\n' % name.encode()).startswith(b"OK")
    finally:
        client.close()


def _read(pair: Pair, server: str, name: str) -> tuple[bytes, bytes]:
    client = login(pair, server)
    try:
        return (client.command(b"LISTSCRIPTS\r\n"),
                client.command(b'GETSCRIPT "%s"\r\n' % name.encode()))
    finally:
        client.close()


@pytest.mark.parametrize(("writer", "reader"), [("cote", "dovecot"), ("dovecot", "cote")])
def test_each_reads_the_others_scripts(pair: Pair, writer: str, reader: str) -> None:
    pair.reset_home(USER)
    _store(pair, writer, "spam", FILEINTO)
    _store(pair, writer, "plain", KEEP)
    listing, script = _read(pair, reader, "spam")
    assert listing == b'"plain" ACTIVE\r\n"spam"\r\nOK "Listscripts completed."\r\n' or \
        listing == b'"spam"\r\n"plain" ACTIVE\r\nOK "Listscripts completed."\r\n'
    assert script == b"{%d}\r\n" % len(FILEINTO) + FILEINTO + b"\r\nOK \"Getscript completed.\"\r\n"
    home = pair.home(USER)
    assert os.readlink(home / ".dovecot.sieve") == "sieve/plain.sieve"
    assert (home / "sieve" / "spam.sieve").read_bytes() == FILEINTO


def test_logout_log_line(pair: Pair) -> None:
    """``managesieve(user)<pid><session>: Info: Disconnected: Logged out bytes=in/out``."""
    replay(pair, [b"LISTSCRIPTS\r\n", b'PUTSCRIPT "x" "keep;"\r\n', b"LOGOUT\r\n"])
    shape = re.compile(r"managesieve\(user1\)<\d+><[^>]+>: Info: Disconnected: Logged out "
                       r"(bytes=\d+/\d+)")
    theirs = shape.findall(pair.dovecot.log_path.read_text())
    deadline = time.monotonic() + 5
    while len(ours := shape.findall(pair.cote.log_text())) < len(theirs) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    # every session of this module so far, in the same order, with the same counts
    assert theirs and ours == theirs


def test_dovecot_delivery_runs_the_script_cote_activated(pair: Pair) -> None:
    pair.reset_home(USER)
    _store(pair, "cote", "spam", FILEINTO)
    with smtplib.LMTP("127.0.0.1", pair.dovecot.ports["lmtp"]) as lmtp:
        for subject in ("x marks", "hello"):
            lmtp.sendmail("a@example.com", [USER],
                          f"From: a@example.com\r\nSubject: {subject}\r\n\r\nbody\r\n")
    maildir = pair.dovecot.user_maildir(USER)
    junk = list((maildir / ".Junk" / "new").iterdir())
    inbox = list((maildir / "new").iterdir())
    assert len(junk) == 1 and b"Subject: x marks" in junk[0].read_bytes()
    assert len(inbox) == 1 and b"Subject: hello" in inbox[0].read_bytes()


def test_names_and_odd_requests(pair: Pair) -> None:
    replay(pair, [
        b'PUTSCRIPT "a" "keep;"\r\n',
        b'GETSCRIPT "a/b"\r\n',
        b'SETACTIVE "a/b"\r\n',
        b'RENAMESCRIPT "a" "b/c"\r\n',
        b'RENAMESCRIPT "a" "a"\r\n',
        b'DELETESCRIPT "nope"\r\n',
        b'PUTSCRIPT "." "keep;"\r\n',
        b'PUTSCRIPT ".." "keep;"\r\n',
        b'PUTSCRIPT "tmp" "keep;"\r\n',
        b'PUTSCRIPT "' + b"n" * 300 + b'" "keep;"\r\n',
        b'PUTSCRIPT "' + b"n" * 200 + b'" "keep;"\r\n',
        b'PUTSCRIPT "tab\there" "keep;"\r\n',
        b"LISTSCRIPTS\r\n",
        b'HAVESPACE "a"\r\n',
        b"HAVESPACE\r\n",
        b'HAVESPACE "a" 1 2\r\n',
        b"SETACTIVE\r\n",
        b'RENAMESCRIPT "a"\r\n',
        b"NOOP " + b"x" * 70000 + b"\r\n",
        b"NOOP\r\n",
        b'PUTSCRIPT "q" "a\r\n',
        b"NOOP\r\n",
    ])


def test_malformed_lines(pair: Pair) -> None:
    replay(pair, [
        b'NOOP  "b"\r\n', b'GETSCRIPT "a\\x"\r\n', b"GETSCRIPT {x}\r\n",
        b"GETSCRIPT {3}\r\nabc\r\n", b'GETSCRIPT "a"x\r\n', b'GETSCRIPT "a" \r\n',
        b" NOOP\r\n", b"\r\n", b"NOOP\n", b"noop\r\n", b'GETSCRIPT a"b\r\n',
        b'PUTSCRIPT "a" {3+}\r\nabc x\r\n', b'HAVESPACE "a" -1\r\n',
        b'HAVESPACE "a" 4294967296\r\n', b'HAVESPACE "a" 01\r\n', b'NOOP "\xff"\r\n',
        b'PUTSCRIPT "\xff" "keep;"\r\n', b'CHECKSCRIPT "a" x\r\n',
        b'RENAMESCRIPT "a" "b" "c"\r\n', b'SETACTIVE "a" x\r\n', b'DELETESCRIPT "a" "b"\r\n',
        b'HAVESPACE "a" 1 x\r\n', b'RENAMESCRIPT "a"\r\n', b"RENAMESCRIPT\r\n",
        b"CHECKSCRIPT\r\n", b"PUTSCRIPT\r\n", b"SETACTIVE\r\n", b"RENAMESCRIPT a b\r\n",
        b"CHECKSCRIPT x\r\n", b'NOOP "a" "b"\r\n', b"NOOP x\r\n", b"NOOP\r\n",
    ])


def test_sieve_extensions_setting() -> None:
    """``sieve_extensions = -body -regex +editheader``: the SIEVE capability line and what
    ``require`` accepts change the same way on both servers."""
    with server_pair(extra_plugin="sieve_extensions = -body -regex +editheader") as other:
        out = replay(other, [
            b"CAPABILITY\r\n",
            b'CHECKSCRIPT "require \\"body\\"; keep;"\r\n',
            b'CHECKSCRIPT "require \\"editheader\\"; addheader \\"X-A\\" \\"b\\";"\r\n',
            b'CHECKSCRIPT "require \\"regex\\"; keep;"\r\n',
        ])
        sieve_line = out[0].split(b"\r\n")[1]
        assert b" body " not in sieve_line and sieve_line.endswith(b' editheader"')
        assert out[2] == b'OK "Script checked successfully."\r\n'
        greetings = []
        for server in ("dovecot", "cote"):
            client = SieveClient(other.ports[server])
            greetings.append(client.greeting)
            client.close()
        assert greetings[0] == greetings[1] and sieve_line in greetings[0]


# Argument values Pigeonhole judges (tests/sieve_semantics): address headers, envelope parts,
# redirect addresses, POSIX regular expressions, relational operators, notify methods,
# include targets, and the warnings (days, date parts, header names, IMAP flags).
SEMANTICS = [
    b'if address :is "reply-to" "x" { keep; }',
    b'if address :is "disposition-notification-to" "x" { keep; }',
    b'if address :is "x-envelope-to" "x" { keep; }',
    b'if address :is "list-post" "x" { keep; }',
    b'if address :is "x-beenthere" "x" { keep; }',
    b'if address :is "delivered-to" "x" { keep; }',
    b'if address :is "x-original-to" "x" { keep; }',
    b'if address :is "FROM" "x" { keep; }',
    b'if address :is "subject" "x" { keep; }',
    b'require ["regex"]; if header :regex "a" "*a" { keep; }',
    b'require ["regex"]; if header :regex "a" "a**" { keep; }',
    b'require ["regex"]; if header :regex "a" "a{2" { keep; }',
    b'require ["regex"]; if header :regex "a" "a)" { keep; }',
    b'require ["regex"]; if header :regex "a" "\\" { keep; }',
    b'require ["regex"]; if header :regex "a" "a|*b" { keep; }',
    b'require ["regex"]; if header :regex "a" "[a" { keep; }',
    b'require ["regex"]; if header :regex "a" "[]a]" { keep; }',
    b'require ["regex"]; if header :regex "a" "a{1,2}" { keep; }',
    b'require ["regex"]; if header :regex "a" "(a|)" { keep; }',
    b'require ["regex"]; if header :regex "a" "()" { keep; }',
    b'require ["regex"]; if header :regex "a" "a{,2}" { keep; }',
    b'require ["regex"]; if header :regex "a" "a{2,1}" { keep; }',
    b'require ["regex"]; if header :regex "a" "\\d" { keep; }',
    b'require ["regex"]; if header :regex "a" "[[:alpha:]]" { keep; }',
    b'require ["regex"]; if header :regex "a" "[[:foo:]]" { keep; }',
    b'require ["regex"]; if header :regex "a" "a++" { keep; }',
    b'require ["regex"]; if header :regex "a" "+a" { keep; }',
    b'require ["regex"]; if header :regex "a" "(*a)" { keep; }',
    b'require ["regex"]; if header :regex "a" "a|" { keep; }',
    b'require ["regex"]; if header :regex "a" "|a" { keep; }',
    b'require ["regex"]; if header :regex "a" "a{1" { keep; }',
    b'require ["regex"]; if header :regex "a" "(" { keep; }',
    b'require ["regex"]; if header :regex "a" "a[" { keep; }',
    b'require ["regex"]; if header :regex "a" "(?i)a" { keep; }',
    b'require ["regex"]; if header :regex "a" "(a" { keep; }',
    b'require "include"; include :personal "foo";',
    b'require "include"; include "x/y";',
    b'require "include"; include :global "foo";',
    b'require "include"; include "";',
    b'redirect "not an address";',
    b'redirect "a@b.c";',
    b'redirect "<a@b.c>";',
    b'redirect "a b@c.d";',
    b'redirect "@c.d";',
    b'redirect "a@";',
    b'redirect "a@b";',
    b'redirect "Name <a@b.c>";',
    b'redirect "\\"q x\\"@b.c";',
    b'redirect "a@b..c";',
    b'redirect "a.@b.c";',
    b'require "vacation"; vacation :days 0 "r";',
    b'require "date"; if date :is "date" "foo" "x" { keep; }',
    b'require "relational"; if header :value "xx" "a" "b" { keep; }',
    b'require "relational"; if header :count "GE" "a" "1" { keep; }',
    b'require "enotify"; notify "foo:bar";',
    b'require "enotify"; notify "mailto:";',
    b'require "enotify"; notify "mailto:a@b.c";',
    b'require "imap4flags"; addflag "\\\\Foo";',
    b'require "imap4flags"; addflag ["\\\\Seen", "\\\\Bar"];',
    b'if header :is "fr om" "x" { keep; }',
    b'require "envelope"; if envelope :is "foo" "x" { keep; }',
    b'require ["variables","regex"]; set "a" "("; if header :regex "a" "${a}" { keep; }',
]


def test_argument_values_judged_as_pigeonhole(pair: Pair) -> None:
    out = replay(pair, [b"CHECKSCRIPT " + literal(script) + b"\r\n" for script in SEMANTICS])
    assert sum(reply.startswith(b"NO") for reply in out) > 25
    assert sum(reply.startswith(b"OK (WARNINGS)") for reply in out) >= 6


NAMES = [b'"a"', b'"b"', b'"c"', b'""', b'"x/y"', b"{1+}\r\na", '"é"'.encode()]
SCRIPTS = [b'"keep;"', b'"foo;"', b"{7+}\r\nkeep;\r\n", b'"stop"', b'""',
           b'"require \\"fileinto\\"; fileinto \\"x\\";"']
SIZES = [b"0", b"1", b"100", b"5000", b"x"]
SHAPES: dict[str, list[list[bytes]]] = {
    "PUTSCRIPT": [NAMES, SCRIPTS], "putscript": [NAMES, SCRIPTS], "GETSCRIPT": [NAMES],
    "SETACTIVE": [NAMES], "DELETESCRIPT": [NAMES], "RENAMESCRIPT": [NAMES, NAMES],
    "HAVESPACE": [NAMES, SIZES], "CHECKSCRIPT": [SCRIPTS], "LISTSCRIPTS": [], "NOOP": [],
    "CAPABILITY": [], "FOO": []}


def random_command(r: random.Random) -> bytes:
    verb = r.choice(sorted(SHAPES))
    parts = [verb.encode()] + [r.choice(choices) for choices in SHAPES[verb]]
    if r.random() < 0.1 and len(parts) > 1:
        parts.pop()
    if r.random() < 0.05:
        parts.append(b'"extra"')
    return b" ".join(parts) + b"\r\n"


def test_random_sessions(pair: Pair) -> None:
    """300 commands drawn from the commands, names (valid and not), scripts (valid and not)
    and sizes above, under the module's quotas: every reply equal to Pigeonhole's.
    (Atoms where a string belongs are left out: after such an error Pigeonhole reads a
    following literal's octets as commands.)"""
    r = random.Random(4190)
    replay(pair, [random_command(r) for _ in range(300)])
