"""Seeded random garbage and half-valid commands: every line gets an answer, the process
never dies, and a NOOP afterwards still works (no traceback reaches the client)."""

from __future__ import annotations

import random

from tests.imapd.conftest import cote_client
from tests.support.dovecot import DovecotOracle

WORDS = [b"FETCH", b"STORE", b"SEARCH", b"UID", b"SELECT", b"LIST", b"APPEND", b"COPY",
         b"(", b")", b"[", b"]", b"<", b">", b"1:*", b"*", b"$", b"0", b"4294967296", b'"',
         b'"x"', b"\\Seen", b"BODY[", b"BODY[1.2.HEADER.FIELDS", b"INBOX", b"NIL", b"{3}",
         b"{2+}", b"~{1}", b"RETURN", b"CHARSET", b"MODSEQ", b"CHANGEDSINCE", b"\x00", b"\xff",
         b"%", b"&-", b"&AAA", b"ENVELOPE", b"BINARY[1]<0.5>", b"OR", b"NOT", b"IDLE"]


def garbage(rnd: random.Random) -> bytes:
    words = [rnd.choice(WORDS) for _ in range(rnd.randint(0, 8))]
    return b" ".join(words)


def test_garbage_never_ends_the_session(store: DovecotOracle) -> None:
    rnd = random.Random(7)
    c = cote_client(store, "cotemisc")
    c.command("SELECT INBOX", "s")
    c.sock.settimeout(5)
    for _ in range(300):
        line = garbage(rnd)
        if b"{" in line or b"IDLE" in line:
            continue  # literal/IDLE framing is covered by the transcript tests
        reply = c.command(line, "g")
        assert reply.endswith(b"\r\n") and b"Traceback" not in reply, (line, reply)
    assert c.command("NOOP", "z").startswith(b"z OK NOOP completed")
    c.command("LOGOUT", "q")
    c.close()
    assert c.proc is not None and c.proc.returncode == 0
    assert c.proc.stderr is not None
    log = c.proc.stderr.read().decode()
    assert "Error" not in log, log
