"""The one exception a bad configuration raises, carrying doveconf's error text."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration problem; ``str(e)`` is the text doveconf prints after ``Fatal: ``."""

    def __init__(self, text: str, *, file: str | None = None, line: int | None = None,
                 message: str | None = None, in_managesieve: bool = False) -> None:
        super().__init__(text)
        self.file = file
        self.line = line
        self.message = message if message is not None else text
        # managesieve-login (which doveconf asks for the sieve capability) fails on it too
        self.in_managesieve = in_managesieve
