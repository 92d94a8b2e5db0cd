"""The IMAP ENVELOPE of a message header, byte for byte as Dovecot sends it.

Date, Message-ID and In-Reply-To are the raw (unfolded) values; Subject goes through
``string_for_humans``; the last Date/Subject/Message-ID/In-Reply-To wins while repeated
address headers add up; Sender and Reply-To fall back to From when they give no address.
Encoded words are left as they are.
"""

from __future__ import annotations

from collections.abc import Iterable

from cote import imapwire
from cote.storage.message.address import Address, imap_address_list, parse_addresses
from cote.storage.message.headers import Field

_ADDRESS_FIELDS = (b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc")
_TEXT_FIELDS = (b"date", b"subject", b"in-reply-to", b"message-id")
ENVELOPE_FIELDS = frozenset(_ADDRESS_FIELDS + _TEXT_FIELDS)


def envelope(fields: Iterable[Field]) -> bytes:
    """``(date subject from sender reply-to to cc bcc in-reply-to message-id)``."""
    text: dict[bytes, bytes] = {}
    addrs: dict[bytes, list[Address]] = {}
    for name, value in fields:
        if name in _TEXT_FIELDS:
            text[name] = value
        elif name in _ADDRESS_FIELDS:
            parsed = parse_addresses(value)
            if parsed:
                addrs.setdefault(name, []).extend(parsed)
    frm = addrs.get(b"from", [])
    subject = text.get(b"subject")
    return b"".join((
        b"(",
        imapwire.nstring_nolf(text.get(b"date")), b" ",
        imapwire.NIL if subject is None else imapwire.string_for_humans(subject), b" ",
        imap_address_list(frm), b" ",
        imap_address_list(addrs.get(b"sender") or frm), b" ",
        imap_address_list(addrs.get(b"reply-to") or frm), b" ",
        imap_address_list(addrs.get(b"to", [])), b" ",
        imap_address_list(addrs.get(b"cc", [])), b" ",
        imap_address_list(addrs.get(b"bcc", [])), b" ",
        imapwire.nstring_nolf(text.get(b"in-reply-to")), b" ",
        imapwire.nstring_nolf(text.get(b"message-id")),
        b")",
    ))
