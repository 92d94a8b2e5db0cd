"""The authenticated ManageSieve session (RFC 5804 section 2) as a sans-IO machine.

Parsed command lines in, reply bytes and log lines out; the script storage is Pigeonhole's
file layout (:mod:`.storage`), PUTSCRIPT and CHECKSCRIPT run the checker
(:mod:`.sieve_syntax`). Texts and response codes are Pigeonhole 0.5's, compared in the
differential tests. Storage calls block: one process serves one user.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from cote.mailproc.managesieve import wire
from cote.mailproc.managesieve.capability import Capabilities
from cote.mailproc.managesieve.sieve_syntax import EXTENSIONS, Context, compile_report
from cote.mailproc.managesieve.storage import (
    ScriptError,
    ScriptStorage,
    sanitized,
    valid_name,
)
from cote.mailproc.managesieve.wire import Atom, BadLine, Line, String, Word

LOGGED_IN = wire.ok("Logged in.")
INTERNAL_ERROR = "Internal error occurred. Refer to server log for more information."


@dataclass(slots=True)
class Outcome:
    reply: bytes
    log: list[str] = field(default_factory=list)  # Info lines ("Failed to ...")
    errors: list[str] = field(default_factory=list)  # Error lines
    logout: bool = False


class _ArgError(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


@dataclass(slots=True)
class Stats:
    """managesieve_logout_format's counters (Pigeonhole's names)."""

    put_count: int = 0
    put_bytes: int = 0
    get_count: int = 0
    get_bytes: int = 0
    check_count: int = 0
    check_bytes: int = 0
    deleted_count: int = 0
    renamed_count: int = 0

    def values(self) -> dict[str, str]:
        return {name: str(getattr(self, name)) for name in self.__slots__}


class Session:
    def __init__(self, storage: ScriptStorage, capabilities: Capabilities,
                 max_compile_errors: int = 5, extensions: frozenset[str] | None = None,
                 global_scripts: bool = False) -> None:
        self.storage = storage
        self.capabilities = capabilities
        self.extensions = extensions if extensions is not None else EXTENSIONS
        self.global_scripts = global_scripts  # sieve_global is set
        self.max_compile_errors = max_compile_errors or 5
        self.logged_out = False
        self.stats = Stats()

    def handle(self, item: Line | BadLine) -> Outcome:
        if isinstance(item, BadLine):
            if item.literal and item.name in ("PUTSCRIPT", "CHECKSCRIPT"):
                try:
                    self.storage.check_size(item.literal)
                except ScriptError as e:
                    return Outcome(wire.no(e.text, e.code))
            if item.name:
                reason = "Too long argument." if item.too_long else item.reason
                return Outcome(wire.no(f"Error in MANAGESIEVE command {item.name}: {reason}"))
            return Outcome(wire.no("Error in MANAGESIEVE command received by server."))
        name = item.name
        handler = self._handlers.get(name)
        if handler is None:
            return Outcome(wire.no(f"Error in MANAGESIEVE command {name}: Unknown command."))
        try:
            return handler(self, item.args)
        except _ArgError as e:
            return Outcome(wire.no(f"Error in MANAGESIEVE command {name}: {e.text}"))
        except ScriptError as e:
            return Outcome(wire.no(e.text, e.code), log=[self._failure(name, item.args, e)])
        except OSError as e:
            return Outcome(wire.no(INTERNAL_ERROR, "TRYLATER"),
                           errors=[f"{name} failed: {e}"])

    @staticmethod
    def _failure(name: str, args: tuple[Word, ...], e: ScriptError) -> str:
        script = args[0].text() if args and isinstance(args[0], String) else ""
        what = {"PUTSCRIPT": "store script", "GETSCRIPT": "retrieve script",
                "DELETESCRIPT": "delete script", "SETACTIVE": "activate script",
                "RENAMESCRIPT": "rename script", "HAVESPACE": "check space for script"}
        return f"Failed to {what.get(name, name.lower())} `{script}': {e.text}"

    # -- argument shapes ---------------------------------------------------------------------
    @staticmethod
    def _none(args: tuple[Word, ...]) -> None:
        if args:
            raise _ArgError("Too many arguments.")

    @staticmethod
    def _strings(args: tuple[Word, ...], count: int, *, short: str = "Missing arguments.",
                 missing: str = "Missing arguments.", many: str = "Too many arguments."
                 ) -> list[String]:
        """Exactly ``count`` strings; the texts are Pigeonhole's per command (PUTSCRIPT and
        CHECKSCRIPT read their script as a stream and word these cases differently)."""
        if not args:
            raise _ArgError(missing)
        if len(args) < count:
            raise _ArgError(short)
        if len(args) > count:
            raise _ArgError(many)
        if not all(isinstance(a, String) for a in args):
            raise _ArgError("Invalid arguments.")
        return [a for a in args if isinstance(a, String)]

    # -- commands ----------------------------------------------------------------------------
    def _capability(self, args: tuple[Word, ...]) -> Outcome:
        self._none(args)
        block = b"".join(self.capabilities.lines(None, False))
        return Outcome(block + wire.ok("Capability completed."))

    def _noop(self, args: tuple[Word, ...]) -> Outcome:
        if not args:
            return Outcome(wire.ok("NOOP Completed"))
        if len(args) > 1:
            raise _ArgError("Too many arguments.")
        if not isinstance(args[0], String):
            return Outcome(wire.no("Invalid echo tag."))
        return Outcome(b"OK (TAG " + wire.string(args[0].value) + b') "Done"\r\n')

    def _logout(self, args: tuple[Word, ...]) -> Outcome:
        self._none(args)
        self.logged_out = True
        return Outcome(wire.ok("Logout completed."), logout=True)

    def _listscripts(self, args: tuple[Word, ...]) -> Outcome:
        self._none(args)
        active = self.storage.active()
        lines = [wire.string(n) + (b" ACTIVE" if n == active else b"") + b"\r\n"
                 for n in self.storage.names()]
        return Outcome(b"".join(lines) + wire.ok("Listscripts completed."))

    def _compile(self, script: bytes, done: str, prefix: str = "") -> bytes:
        """NO with the compiler's errors, or OK (WARNINGS), or OK ``done``; PUTSCRIPT's
        lines start with the script's name, as Pigeonhole's."""
        context = Context(self.extensions, frozenset(self.storage.names()),
                          self.global_scripts)
        report = compile_report(script, self.max_compile_errors, context)
        if report.errors:
            return wire.no("".join(prefix + line + "\r\n" for line in report.errors))
        if report.warnings:
            return wire.ok("".join(prefix + line + "\r\n" for line in report.warnings),
                           "WARNINGS")
        return wire.ok(done)

    def _putscript(self, args: tuple[Word, ...]) -> Outcome:
        # Pigeonhole's order: a literal's size meets the quota as soon as it is announced;
        # the name is checked when saving starts; extra arguments after the script
        name, script = self._strings(args[:2], 2, short="Invalid arguments.")
        if script.literal:
            self.storage.check_quota(name.text(), len(script.value))
        self._check_put_name(name)
        if len(args) > 2:
            raise _ArgError("Too many command arguments.")
        if not script.literal:
            self.storage.check_quota(name.text(), len(script.value))
        reply = self._compile(script.value, "PUTSCRIPT completed.", f"{name.text()}: ")
        if reply.startswith(b"OK"):
            self.storage.put(name.text(), script.value)
            self.stats.put_count += 1
            self.stats.put_bytes += len(script.value)
        return Outcome(reply)

    @staticmethod
    def _check_put_name(name: String) -> None:
        if not valid_name(name.text()):
            raise ScriptError(f"Invalid Sieve script name `{sanitized(name.text())}'.")

    def _checkscript(self, args: tuple[Word, ...]) -> Outcome:
        (script,) = self._strings(args, 1, missing="Invalid arguments.",
                                  many="Too many command arguments.")
        self.storage.check_size(len(script.value))
        reply = self._compile(script.value, "Script checked successfully.")
        if reply.startswith(b"OK"):
            self.stats.check_count += 1
            self.stats.check_bytes += len(script.value)
        return Outcome(reply)

    def _getscript(self, args: tuple[Word, ...]) -> Outcome:
        (name,) = self._strings(args, 1)
        data = self.storage.get(name.text())
        self.stats.get_count += 1
        self.stats.get_bytes += len(data)
        return Outcome(b"{%d}\r\n" % len(data) + data + b"\r\n" +
                       wire.ok("Getscript completed."))

    def _setactive(self, args: tuple[Word, ...]) -> Outcome:
        (name,) = self._strings(args, 1)
        if not name.value:
            if self.storage.deactivate():
                return Outcome(wire.ok("Active script is now deactivated."))
            return Outcome(wire.ok("No scripts currently active."))
        if not self.storage.activate(name.text()):
            return Outcome(wire.ok("Script is already active."))
        return Outcome(wire.ok("Setactive completed."))

    def _deletescript(self, args: tuple[Word, ...]) -> Outcome:
        (name,) = self._strings(args, 1)
        self.storage.delete(name.text())
        self.stats.deleted_count += 1
        return Outcome(wire.ok("Deletescript completed."))

    def _renamescript(self, args: tuple[Word, ...]) -> Outcome:
        old, new = self._strings(args, 2)
        self.storage.rename(old.text(), new.text())
        self.stats.renamed_count += 1
        return Outcome(wire.ok("Renamescript completed."))

    def _havespace(self, args: tuple[Word, ...]) -> Outcome:
        if len(args) < 2:
            raise _ArgError("Missing arguments.")
        if len(args) > 2:
            raise _ArgError("Too many arguments.")
        name, size_word = args
        if not isinstance(name, String):
            raise _ArgError("Invalid arguments.")
        size = wire.number(size_word) if isinstance(size_word, Atom) else None
        if size is None:
            return Outcome(wire.no("Invalid scriptsize argument."))
        if not valid_name(name.text()):
            return Outcome(wire.no("Invalid script name."))
        if size == 0:
            return Outcome(wire.no("Cannot upload empty script."))
        self.storage.check_quota(name.text(), size)
        return Outcome(wire.ok("Putscript would succeed."))

    _handlers: ClassVar[dict[str, Callable[[Session, tuple[Word, ...]], Outcome]]] = {
        "CAPABILITY": _capability, "NOOP": _noop, "LOGOUT": _logout,
        "LISTSCRIPTS": _listscripts, "PUTSCRIPT": _putscript, "CHECKSCRIPT": _checkscript,
        "GETSCRIPT": _getscript, "SETACTIVE": _setactive, "DELETESCRIPT": _deletescript,
        "RENAMESCRIPT": _renamescript, "HAVESPACE": _havespace,
    }
