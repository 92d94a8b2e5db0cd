"""Storage errors: exceptions inside storage, turned into protocol replies at the boundary.

``code`` is the IMAP response code a protocol layer should use (RFC 5530: ``NONEXISTENT``,
``ALREADYEXISTS``, ``CANNOT``, ``OVERQUOTA``, ``INUSE``, ``LIMIT``, ``SERVERBUG``);
the message is Dovecot's wording where Dovecot has one.
"""

from __future__ import annotations

import errno
import functools
import inspect
import logging
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger("cote.storage")


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


_T = TypeVar("_T")


def from_os_error(e: OSError) -> StorageError:
    """The protocol-level error for a failed system call (Dovecot's wording)."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        text = "Not enough disk space" if e.errno == errno.ENOSPC else "Quota exceeded"
        return StorageError(text, code="OVERQUOTA")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError("Permission denied", code="NOPERM")
    return StorageError("Internal error occurred. Refer to server log for more information.",
                        code="SERVERBUG")


def _wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StorageError:
            raise
        except OSError as e:
            log.error("%s: %s", fn.__qualname__, e)
            raise from_os_error(e) from e
        except sqlite3.Error as e:
            log.error("%s: index: %s", fn.__qualname__, e)
            raise StorageError("Internal error occurred. Refer to server log for more "
                               "information.", code="SERVERBUG") from e

    return call


def os_errors_as_storage_errors(cls: type[_T]) -> type[_T]:
    """Class decorator: public methods raise :class:`StorageError`, never a bare OSError."""
    for name, value in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(value):
            setattr(cls, name, _wrap(value))
    return cls
