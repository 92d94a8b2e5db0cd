"""Line ends of stored messages: Dovecot's Maildir save writes LF, cote writes the same.

``SaveLineEnds`` converts an APPENDed/delivered message chunk by chunk as Dovecot's save
does: every CRLF becomes LF (only the one CR right before the LF goes, so ``\\r\\r\\n`` is
stored as ``\\r\\n``), a lone CR elsewhere is kept, and a CR at the very end is dropped.
Reading converts back (:func:`cote.storage.message.sections.crlf_chunks`), so a stored
message answers FETCH exactly as Dovecot's copy of it does.
"""

from __future__ import annotations


class SaveLineEnds:
    """Streaming CRLF → LF converter: ``feed`` chunks, then ``finish``."""

    __slots__ = ("_cr",)

    def __init__(self) -> None:
        self._cr = False  # the previous chunk ended with a CR still undecided

    def feed(self, chunk: bytes) -> bytes:
        if self._cr:
            chunk = b"\r" + chunk
            self._cr = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self._cr = True
        return chunk.replace(b"\r\n", b"\n")

    def finish(self) -> bytes:
        """Whatever is still held back at the end of the message (a final CR is dropped)."""
        self._cr = False
        return b""


def to_stored(message: bytes) -> bytes:
    """The whole-message form of :class:`SaveLineEnds`."""
    conv = SaveLineEnds()
    return conv.feed(message) + conv.finish()
