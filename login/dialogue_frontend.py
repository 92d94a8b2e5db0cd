"""What the POP3 and ManageSieve login frontends share.

Both feed a sans-IO login dialogue (``pop3_dialogue``, ``managesieve_dialogue``) that owns
the SASL exchange: the login server's :class:`~cote.login.server.Frontend` calls about the
exchange (challenge, failure, success) go straight to it, and the mechanism list comes from
the auth daemon's handshake the same way. Only how bytes become lines differs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Generic, Protocol, TypeVar

from cote.auth.protocol.auth_client import MechanismInfo, MechFlag
from cote.login.actions import Action
from cote.login.pop3_dialogue import Mechanism


class LoginDialogue(Protocol):
    @property
    def user(self) -> str | None: ...

    @property
    def mechanism(self) -> str | None: ...

    def greeting(self) -> bytes: ...

    def challenge(self, data: bytes) -> list[Action]: ...

    def failed(self, reason: str | None = None, *, temporary: bool = False) -> list[Action]: ...

    def succeeded(self) -> None: ...


D = TypeVar("D", bound=LoginDialogue)


def login_mechanisms(mechanisms: tuple[MechanismInfo, ...]) -> tuple[Mechanism, ...]:
    """The auth daemon's mechanisms as the dialogues see them (APOP is never offered as SASL)."""
    return tuple(Mechanism(m.name, plaintext=bool(m.flags & MechFlag.PLAINTEXT),
                           private=bool(m.flags & MechFlag.PRIVATE) or m.name == "APOP")
                 for m in mechanisms)


class DialogueFrontend(ABC, Generic[D]):
    """The Frontend calls that only relay to the dialogue."""

    dialogue: D

    @abstractmethod
    def feed(self, data: bytes) -> list[Action]:
        """Take the client's bytes; the actions the server must carry out."""

    @property
    def user(self) -> str | None:
        return self.dialogue.user

    @property
    def mechanism(self) -> str | None:
        return self.dialogue.mechanism

    def greeting(self) -> bytes:
        return self.dialogue.greeting()

    def resume(self) -> list[Action]:
        return self.feed(b"")

    def challenge(self, data: bytes) -> list[Action]:
        return self.dialogue.challenge(data)

    def failed(self, reason: str | None, *, temporary: bool) -> list[Action]:
        return self.dialogue.failed(reason, temporary=temporary)

    def succeeded(self) -> None:
        self.dialogue.succeeded()

    def refused(self, reason: str) -> list[Action]:
        return self.dialogue.failed(reason)
