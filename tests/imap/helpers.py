"""Drive a Connection with bytes and collect its events, as a server would."""

from __future__ import annotations

from cote.mailproc.imap import CLOSED, NEED_DATA, Bad, Command, Connection, LiteralStart
from cote.mailproc.imap.events import Event


def events(conn: Connection, data: bytes, *, accept: bool = True) -> list[Event]:
    """Feed ``data`` and take every event up to NEED_DATA/CLOSED (literals accepted)."""
    conn.receive_data(data)
    out: list[Event] = []
    while True:
        e = conn.next_event()
        if e is NEED_DATA or e is CLOSED:
            return out
        out.append(e)
        if isinstance(e, LiteralStart):
            if accept:
                conn.accept_literal()
            else:
                conn.reject_literal()


def parse(line: bytes, enabled: frozenset[str] = frozenset()) -> object:
    """The typed args of a single complete command line."""
    conn = Connection()
    conn.enabled = enabled
    evs = events(conn, line)
    assert len(evs) == 1, evs
    e = evs[0]
    assert isinstance(e, Command), e
    return e.args


def bad(line: bytes, enabled: frozenset[str] = frozenset()) -> str:
    """The BAD text cote gives for a malformed command line."""
    conn = Connection()
    conn.enabled = enabled
    evs = events(conn, line)
    assert evs and isinstance(evs[0], Bad), evs
    return evs[0].text
