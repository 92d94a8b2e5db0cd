"""How any cote process writes log records: to its stderr, which is a pipe to the log service.

Unprivileged processes never open log files. A process's stderr (fd 2) is the write end of its
service's log pipe; the log service (master side) reads it and writes ``log_path`` /
``info_log_path`` / ``debug_log_path`` / syslog with Dovecot's line format::

    Nov 22 00:42:22 imap-login: Info: Disconnected: ...
    Nov 22 00:42:22 imap(user1)<1234><sess>: Error: ...

Wire format of one record on the pipe (one ``write()``, at most PIPE_BUF bytes, so lines from
processes sharing the pipe never interleave)::

    \\x01 <level letter> <prefix> \\t <text> \\n

Level letters: D(ebug) I(nfo) W(arning) E(rror) F(atal) P(anic). Bytes written to stderr
without the leading \\x01 (tracebacks, prints) are logged as ``Error`` lines with the service's
default prefix. Also here: the ``login_log_format`` formatter the login processes use.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping

LEVELS = {"D": "Debug", "I": "Info", "W": "Warning", "E": "Error", "F": "Fatal", "P": "Panic"}
LEVEL_LETTER = {name: letter for letter, name in LEVELS.items()}
MARK = b"\x01"
PIPE_BUF = 4096
MAX_TEXT = PIPE_BUF - 256  # room for the prefix and framing


def encode_record(level: str, prefix: str, text: str) -> bytes:
    """One wire record. ``level`` is a letter or a name; newlines in text become spaces."""
    letter = LEVEL_LETTER.get(level, level)
    if letter not in LEVELS:
        raise ValueError(f"unknown log level {level!r}")
    clean_prefix = prefix.replace("\t", " ").replace("\n", " ")
    data = text.replace("\n", " ").encode("utf-8", "replace")
    if len(data) > MAX_TEXT:
        data = data[:MAX_TEXT]
    head = MARK + letter.encode() + clean_prefix.encode("utf-8", "replace")[:200]
    return head + b"\t" + data + b"\n"


def decode_line(line: bytes, default_prefix: str) -> tuple[str, str, str]:
    """(level name, prefix, text) for one line read from a log pipe (without its newline)."""
    if line[:1] == MARK and len(line) >= 2:
        letter = chr(line[1])
        tab = line.find(b"\t", 2)
        if letter in LEVELS and tab >= 0:
            return (LEVELS[letter], line[2:tab].decode("utf-8", "replace"),
                    line[tab + 1:].decode("utf-8", "replace"))
    return "Error", default_prefix, line.decode("utf-8", "replace")


class Logger:
    """A process's log writer. ``prefix`` is what precedes the level: ``"imap-login: "``."""

    def __init__(self, prefix: str, fd: int = 2, debug: bool = False) -> None:
        self.prefix = prefix
        self.fd = fd
        self.debug_enabled = debug

    def with_prefix(self, prefix: str) -> Logger:
        """A logger writing through the same pipe with another prefix (``mail_log_prefix``)."""
        return Logger(prefix, self.fd, self.debug_enabled)

    def write(self, level: str, text: str) -> None:
        record = encode_record(level, self.prefix, text)
        try:
            os.write(self.fd, record)
        except OSError:
            pass  # the log pipe is gone only when the master and log service are gone

    def debug(self, text: str) -> None:
        if self.debug_enabled:
            self.write("D", text)

    def info(self, text: str) -> None:
        self.write("I", text)

    def warning(self, text: str) -> None:
        self.write("W", text)

    def error(self, text: str) -> None:
        self.write("E", text)

    def fatal(self, text: str) -> None:
        self.write("F", text)


class PipeHandler(logging.Handler):
    """Routes the stdlib ``logging`` module of a child process through its log pipe."""

    _LEVEL = ((logging.CRITICAL, "F"), (logging.ERROR, "E"), (logging.WARNING, "W"),
              (logging.INFO, "I"), (0, "D"))

    def __init__(self, logger: Logger) -> None:
        super().__init__()
        self.logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            text = str(record.msg)
        letter = next(letter for lvl, letter in self._LEVEL if record.levelno >= lvl)
        self.logger.write(letter, text)


def setup_child_logging(prefix: str, *, debug: bool = False) -> Logger:
    """Make fd 2 the only log destination of this process (called by the master after fork)."""
    logger = Logger(prefix, 2, debug)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(PipeHandler(logger))
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    return logger


# -- login_log_format ----------------------------------------------------------------------
_VAR = re.compile(r"%(?:\{([^}]*)\}|([A-Za-z$%]))")


def expand_vars(template: str, variables: Mapping[str, str]) -> tuple[str, bool]:
    """Expand ``%x`` / ``%{name}``; returns (text, True if any variable expanded to empty)."""
    empty = False

    def repl(m: re.Match[str]) -> str:
        nonlocal empty
        key = m.group(1) if m.group(1) is not None else m.group(2)
        if key == "%":
            return "%"
        value = variables.get(key, "")
        if value == "":
            empty = True
        return value

    return _VAR.sub(repl, template), empty


class LoginLogFormatter:
    """Dovecot's ``login_log_format_elements`` + ``login_log_format``.

    Each whitespace-separated element of ``elements`` is expanded; elements in which a
    variable expands to an empty string are left out; the rest are joined with ", " as ``%s``.
    ``login_log_format`` then gets ``%$`` = the message and ``%s`` = the elements.

    Variables (login side, as Dovecot names them): u user, n user name, d domain, s service,
    h home, l/lip local IP, r/rip remote IP, p/pid, m/mech auth mechanism, a/lport local port,
    b/rport remote port, c secured ("secured", "TLS", "TLS handshaking", ...), k/ssl_security,
    e/mail_pid, session, real_lip, real_rip, real_lport, real_rport, orig_user, auth_user, ...
    Callers pass both the letter and the long name when both exist.
    """

    def __init__(self, elements: str, fmt: str) -> None:
        self.elements = elements.split()
        self.fmt = fmt

    def format(self, message: str, variables: Mapping[str, str]) -> str:
        parts = []
        for element in self.elements:
            text, empty = expand_vars(element, variables)
            if not empty:
                parts.append(text)
        elements = ", ".join(parts)
        out, _ = expand_vars(self.fmt, {**variables, "$": message, "s": elements})
        return out


def login_formatter(config: object) -> LoginLogFormatter:
    """The formatter for a loaded cote.config.Config."""
    get: Callable[[str], object] = config.get  # type: ignore[attr-defined]
    return LoginLogFormatter(str(get("login_log_format_elements")), str(get("login_log_format")))
