"""SELECT … (QRESYNC (uidvalidity modseq [known-uids])) (RFC 7162 section 3.2.5): what changed
since the client's modseq, as VANISHED (EARLIER) and FETCH (UID FLAGS MODSEQ)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import response as R
from .values import QResync, SeqSet

if TYPE_CHECKING:
    from .session import Session


def select_qresync(s: Session, q: QResync) -> None:
    box = s.box
    assert box is not None
    if q.uidvalidity != box.uidvalidity:
        return
    w = s.writer
    gone = box.expunged_since(q.modseq)
    if q.known_uids is not None:
        gone = [u for u in gone if q.known_uids.contains(u, box.uidnext)]
    if gone:
        w.write(R.vanished(SeqSet.from_ints(gone), earlier=True))
    for i, m in enumerate(box.modseqs):
        if m > q.modseq:
            u = box.uids[i]
            if q.known_uids is not None and not q.known_uids.contains(u, box.uidnext):
                continue
            w.write(b"* %d FETCH (UID %d FLAGS %s MODSEQ (%d))\r\n"
                    % (i + 1, u, s.flags_of(i), m))
