"""Storage errors: exceptions inside storage, turned into protocol replies at the boundary.

``code`` is the IMAP response code a protocol layer should use (RFC 5530: ``NONEXISTENT``,
``ALREADYEXISTS``, ``CANNOT``, ``OVERQUOTA``, ``INUSE``, ``LIMIT``, ``SERVERBUG``);
the message is Dovecot's wording where Dovecot has one.
"""

from __future__ import annotations


class StorageError(Exception):
    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class MailboxNotFound(StorageError):
    def __init__(self, name: str) -> None:
        super().__init__(f"Mailbox doesn't exist: {name}", code="NONEXISTENT")


class MailboxExists(StorageError):
    def __init__(self, name: str = "") -> None:
        super().__init__("Mailbox already exists", code="ALREADYEXISTS")


class InvalidName(StorageError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"Invalid mailbox name: {reason}", code="CANNOT")


class QuotaExceeded(StorageError):
    def __init__(self, message: str = "Quota exceeded (mailbox for user is full)") -> None:
        super().__init__(message, code="OVERQUOTA")


class MessageGone(StorageError):
    """The message was expunged by another session (RFC 5530 ``EXPUNGEISSUED``)."""

    def __init__(self, uid: int) -> None:
        super().__init__(f"Message UID {uid} was expunged", code="EXPUNGEISSUED")
        self.uid = uid


class ReadOnly(StorageError):
    def __init__(self) -> None:
        super().__init__("Mailbox is read-only", code="CANNOT")
