"""Message parsing on bytes: the MIME structure scanner and everything FETCH/SEARCH/SORT
need from a message, byte for byte as Dovecot 2.3 answers.

Typical use (the IMAP layer)::

    parts, summary = summarize(mm)            # once per message, cached by the index
    parts = loads(summary.parts)              # later, from the cache
    rng = section_range(parts, parse_section(b"1.2"))
    size = crlf_size(mm, *rng); chunks = crlf_chunks(mm, *rng, offset, length)
    header = section_content(mm, parts, parse_section(b"HEADER.FIELDS (FROM)"))
    data, literal8 = binary_content(mm, parts, parse_section(b"2"))
    size, literal8, chunks = binary_stream(mm, parts, parse_section(b"2"))  # big parts

Modules: ``scanner`` (parts, sizes), ``headers`` (header blocks), ``rfc822``/``address``/
``mimeparams`` (value grammars), ``envelope``, ``bodystructure``, ``sections`` (BODY[…]),
``binary`` (BINARY[…]), ``searchkeys`` (decoded words, base subject, dates), ``summary``
(what the index caches), ``lineends`` (how a saved message is stored).
"""

from cote.storage.message.binary import (
    BinaryContent,
    BinaryParseError,
    UnknownCTE,
    binary_content,
    binary_size,
    binary_stream,
)
from cote.storage.message.bodystructure import body, bodystructure
from cote.storage.message.envelope import envelope
from cote.storage.message.lineends import SaveLineEnds, to_stored
from cote.storage.message.scanner import (
    LEAF,
    MESSAGE,
    MULTIPART,
    Part,
    dumps,
    loads,
    scan,
    scan_file,
    virtual_size,
)
from cote.storage.message.sections import (
    Section,
    SectionError,
    crlf_chunks,
    crlf_size,
    parse_section,
    resolve,
    section_content,
    section_range,
)
from cote.storage.message.summary import SortKeys, Summary, summarize

__all__ = [
    "LEAF", "MESSAGE", "MULTIPART", "BinaryContent", "BinaryParseError", "Part",
    "SaveLineEnds", "Section", "SectionError", "SortKeys", "Summary", "UnknownCTE",
    "binary_content", "binary_size", "binary_stream", "body", "bodystructure", "crlf_chunks",
    "crlf_size",
    "dumps", "envelope", "loads", "parse_section", "resolve", "scan", "scan_file",
    "section_content", "section_range", "summarize", "to_stored",
    "virtual_size",
]
