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
from collections.abc import Mapping
from typing import Any

from cote.variables import VariableError, compile_template, expand

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


# -- login_log_format and mail_log_prefix -------------------------------------------------
# Login processes' one-letter variables (Dovecot's login table differs from the mail one:
# %k is ssl_security, %e the mail process pid).
LOGIN_SHORT = {"u": "user", "n": "username", "d": "domain", "s": "service", "h": "home",
               "l": "local_ip", "r": "remote_ip", "p": "pid", "m": "mechanism",
               "a": "local_port", "b": "remote_port", "c": "secured", "k": "ssl_security",
               "e": "mail_pid"}
_SHORT = re.compile(r"%%|%([-0-9.]*[A-Z]*)([a-z])")
_FORMAT = re.compile(r"%(\$|s|%)")
_EMPTY = "\x00"  # stands in for empty values to find elements that expanded to nothing


def _longify(template: str) -> str:
    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "%%":
            return "%%"
        return f"%{m.group(1)}{{{LOGIN_SHORT.get(m.group(2), m.group(2))}}}"

    return _SHORT.sub(repl, template)


def unquote(value: str) -> str:
    """doveconf shows values with spaces in quotes (``"%s(%u): "``): the value inside."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


_USER_VARIABLE = re.compile(r"%(?:[-0-9.]*[A-Za-z]*u|\{user\})")


class LoginLogFormatter:
    """Dovecot's ``login_log_format_elements`` + ``login_log_format`` for login processes.

    Each whitespace-separated element of ``elements`` is expanded (cote.variables syntax, the
    login variable table: %u user, %n username, %d domain, %s service, %l local_ip,
    %r remote_ip, %p pid, %m mechanism, %a local_port, %b remote_port, %c secured,
    %k ssl_security, %e mail_pid, plus long names such as %{session}, %{real_rip},
    %{orig_user}, %{auth_user}); an element in which a variable expands to an empty (or
    missing) value is left out; the rest are joined with ", " into ``%s`` of
    ``login_log_format``, where ``%$`` is the message. Templates are parsed once.

        fmt = login_formatter(cfg)
        log.info(fmt.format("Login", {"user": "u1", "mechanism": "PLAIN", "remote_ip": ...}))
        # -> "Login: user=<u1>, method=PLAIN, rip=…, lip=…, mpid=…, TLS, session=<…>"
    """

    def __init__(self, elements: str, fmt: str) -> None:
        words = unquote(elements).split()
        self.elements = [compile_template(_longify(e)) for e in words]
        # Dovecot logs the user even when there is none yet ("user=<>"); any other element
        # whose variable is empty is left out.
        self.always = [bool(_USER_VARIABLE.search(e)) for e in words]
        self.fmt = unquote(fmt)

    def format(self, message: str, values: Mapping[str, str | None]) -> str:
        marked = {k: (v if v else _EMPTY) for k, v in values.items()}
        plain = {k: (v or "") for k, v in values.items()}
        parts = []
        for template, always in zip(self.elements, self.always, strict=True):
            try:
                text = template.expand(plain if always else marked)
            except VariableError:
                continue  # a variable this login does not have: same as empty
            if _EMPTY not in text:
                parts.append(text)
        joined = ", ".join(parts)
        return _FORMAT.sub(lambda m: {"$": message, "s": joined, "%": "%"}[m.group(1)],
                           self.fmt)


def login_formatter(config: Any) -> LoginLogFormatter:
    """The formatter for a loaded cote.config.Config."""
    return LoginLogFormatter(str(config.get("login_log_format_elements")),
                             str(config.get("login_log_format")))


def mail_log_prefix(config: Any, values: Mapping[str, str | None]) -> str:
    """``mail_log_prefix`` expanded for a mail process (``imap(user1)<1234><sess>: ``).
    Use as ``ctx.log.with_prefix(mail_log_prefix(cfg, values))``."""
    template = unquote(str(config.get("mail_log_prefix")))
    try:
        return expand(template, values)
    except VariableError:
        return f"{values.get('service') or 'mail'}: "  # a template naming unknown variables
