"""A Sieve (RFC 5228) syntax and validity checker for PUTSCRIPT and CHECKSCRIPT.

Three steps, as Pigeonhole's compiler reports them: the lexer (tokens, quoted and ``text:``
multi-line strings, ``#`` and ``/* */`` comments), the parser (commands, arguments, tests,
test lists, blocks) and the validator (``require`` with known extensions, each command's and
test's extension, positional arguments, tagged arguments, sub-tests and blocks). It never
runs a script. Messages follow Pigeonhole 0.5's wording where tests compared them with
``sievec``; :func:`check` returns the error lines (empty: the script is valid) and never
raises, whatever the input.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from cote.mailproc.managesieve import sieve_semantics as sem
from cote.mailproc.managesieve.storage import valid_name

MAX_ERRORS = 5  # managesieve_max_compile_errors

# Extensions `require` accepts (Pigeonhole 0.5's default set, plus the ones it also knows).
EXTENSIONS = frozenset({
    "fileinto", "reject", "ereject", "envelope", "encoded-character", "vacation",
    "vacation-seconds", "subaddress", "comparator-i;ascii-numeric", "comparator-i;octet",
    "comparator-i;ascii-casemap", "relational", "regex", "imap4flags", "copy", "include",
    "variables", "body", "enotify", "environment", "mailbox", "date", "index", "ihave",
    "duplicate", "mime", "foreverypart", "extracttext", "editheader", "spamtest",
    "spamtestplus", "virustest", "imapflags", "notify", "mboxmetadata", "servermetadata",
})
# Always there, never required.
IMPLICIT = frozenset({"comparator-i;octet", "comparator-i;ascii-casemap"})


class SieveError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


# -- lexer ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # identifier, tag, number, string, special (the char itself), eof
    value: str
    line: int
    number: int = 0

    def describe(self) -> str:
        if self.kind in ("identifier", "tag", "number", "string"):
            return self.kind
        if self.kind == "eof":
            return "end of file"
        return f"'{self.value}'"


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[0-9]+([KkMmGg]?)")
_MULTIPLIER = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def tokenize(text: str, warnings: list[str] | None = None) -> list[Token]:
    tokens: list[Token] = []
    pos, line, n = 0, 1, len(text)
    while pos < n:
        c = text[pos]
        if c == "\n":
            line += 1
            pos += 1
        elif c in " \t\r":
            pos += 1
        elif c == "#":
            end = text.find("\n", pos)
            if end < 0 and warnings is not None:
                warnings.append(f"line {line}: warning: no newline (CRLF) at end of hash "
                                "comment at end of file.")
            pos = n if end < 0 else end
        elif text.startswith("/*", pos):
            end = text.find("*/", pos + 2)
            if end < 0:
                raise SieveError(line, "end of file before end of bracket comment "
                                       f"('/* ... */') started at line {line}")
            line += text.count("\n", pos, end)
            pos = end + 2
        elif c == '"':
            start_line = line
            out = []
            i = pos + 1
            while True:
                if i >= n:
                    raise SieveError(line, "end of file before end of quoted string "
                                           f"started at line {start_line}")
                ch = text[i]
                if ch == "\\" and i + 1 < n:
                    out.append(text[i + 1])
                    if text[i + 1] == "\n":
                        line += 1
                    i += 2
                    continue
                if ch == '"':
                    break
                if ch == "\n":
                    line += 1
                out.append(ch)
                i += 1
            tokens.append(Token("string", "".join(out), start_line))
            pos = i + 1
        elif c == ":" and (m := _IDENT.match(text, pos + 1)):
            tokens.append(Token("tag", m.group(0).lower(), line))
            pos = m.end()
        elif (m := _NUMBER.match(text, pos)) is not None:
            value = int(m.group(0).rstrip("KkMmGg")) * _MULTIPLIER[m.group(1).upper()]
            tokens.append(Token("number", m.group(0), line, value))
            pos = m.end()
        elif (m := _IDENT.match(text, pos)) is not None:
            word = m.group(0)
            if word.lower() == "text" and text.startswith(":", m.end()):
                pos, line = _multiline(text, m.end() + 1, line, tokens)
                continue
            tokens.append(Token("identifier", word.lower(), line))
            pos = m.end()
        elif c in "[](),{};":
            tokens.append(Token("special", c, line))
            pos += 1
        else:
            raise SieveError(line, f"unexpected character(s) starting with '{c}'"
                             if c.isprintable() else
                             f"unexpected character(s) starting with 0x{ord(c):02x}")
    tokens.append(Token("eof", "", line))
    return tokens


def _multiline(text: str, pos: int, line: int, tokens: list[Token]) -> tuple[int, int]:
    """``text:`` then spaces, an optional hash comment, a line break, dot-stuffed lines
    up to a line holding only ``.``."""
    start_line = line
    n = len(text)
    while pos < n and text[pos] in " \t":
        pos += 1
    if pos < n and text[pos] == "#":
        end = text.find("\n", pos)
        pos = n if end < 0 else end
    if pos < n and text[pos] == "\r":
        pos += 1
    if pos >= n or text[pos] != "\n":
        raise SieveError(line, "invalid character(s) after 'text:' "
                               "(only whitespace and a hash comment may follow)")
    pos += 1
    line += 1
    lines = []
    while True:
        if pos >= n:
            raise SieveError(line, "end of file before end of multi-line string "
                                   f"started at line {start_line}")
        end = text.find("\n", pos)
        raw = text[pos:n if end < 0 else end]
        pos = n if end < 0 else end + 1
        if end >= 0:
            line += 1
        body = raw[:-1] if raw.endswith("\r") else raw
        if body == "." and end >= 0:
            break
        lines.append(body[1:] if body.startswith("..") else body)
    tokens.append(Token("string", "\n".join(lines), start_line))
    return pos, line


# -- parser -----------------------------------------------------------------------------------
@dataclass(slots=True)
class Argument:
    kind: str  # tag, number, string, string-list
    line: int
    tag: str = ""
    number: int = 0
    strings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Test:
    name: str
    line: int
    arguments: list[Argument] = field(default_factory=list)
    tests: list[Test] = field(default_factory=list)
    test_list: bool = False


@dataclass(slots=True)
class Command(Test):
    """A test's shape (name, arguments, sub-tests) plus an optional block."""

    block: list[Command] | None = None


class Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        tok = self.tokens[self.pos]
        if tok.kind != "eof":
            self.pos += 1
        return tok

    def is_special(self, char: str) -> bool:
        tok = self.peek()
        return tok.kind == "special" and tok.value == char

    def script(self) -> list[Command]:
        commands = self.commands(depth=0)
        tok = self.peek()
        if tok.kind != "eof":
            raise SieveError(tok.line, f"unexpected {tok.describe()} found at (the presumed) "
                                       "end of file")
        return commands

    def commands(self, depth: int) -> list[Command]:
        if depth > 32:
            raise SieveError(self.peek().line, "cannot nest command blocks deeper than 32 "
                                               "levels")
        out = []
        while self.peek().kind == "identifier":
            out.append(self.command(depth))
        return out

    def command(self, depth: int) -> Command:
        name = self.take()
        cmd = Command(name.value, name.line)
        cmd.arguments = self.arguments()
        cmd.tests, cmd.test_list = self.tests(depth)
        tok = self.peek()
        if self.is_special(";"):
            self.take()
        elif self.is_special("{"):
            self.take()
            cmd.block = self.commands(depth + 1)
            end = self.peek()
            if not self.is_special("}"):
                raise SieveError(end.line, "expected end of compound block '}', but found "
                                           f"{end.describe()}")
            self.take()
        else:
            raise SieveError(tok.line, "expected end of command ';' or the beginning of a "
                                       f"compound block '{{', but found {tok.describe()}")
        return cmd

    def arguments(self) -> list[Argument]:
        args = []
        while True:
            tok = self.peek()
            if tok.kind == "tag":
                self.take()
                args.append(Argument("tag", tok.line, tag=tok.value))
            elif tok.kind == "number":
                self.take()
                args.append(Argument("number", tok.line, number=tok.number))
            elif tok.kind == "string":
                self.take()
                args.append(Argument("string", tok.line, strings=[tok.value]))
            elif self.is_special("["):
                self.take()
                args.append(Argument("string-list", tok.line, strings=self.string_list()))
            else:
                return args

    def string_list(self) -> list[str]:
        out: list[str] = []
        while True:
            tok = self.take()
            if tok.kind != "string":
                after = "after ',' " if out else "after '[' "
                raise SieveError(tok.line, f"expecting string {after}in string list, but "
                                           f"found {tok.describe()}")
            out.append(tok.value)
            sep = self.take()
            if sep.kind == "special" and sep.value == "]":
                return out
            if not (sep.kind == "special" and sep.value == ","):
                raise SieveError(sep.line, "expecting ',' or end of string list ']', but "
                                           f"found {sep.describe()}")

    def tests(self, depth: int) -> tuple[list[Test], bool]:
        if depth > 32:
            raise SieveError(self.peek().line, "cannot nest tests deeper than 32 levels")
        tok = self.peek()
        if tok.kind == "identifier":
            return [self.test(depth)], False
        if self.is_special("("):
            self.take()
            out: list[Test] = []
            while True:
                name = self.peek()
                if name.kind != "identifier":
                    after = "after ',' " if out else "after '(' "
                    raise SieveError(name.line, f"expecting test identifier {after}in test "
                                                f"list, but found {name.describe()}")
                out.append(self.test(depth + 1))
                sep = self.take()
                if sep.kind == "special" and sep.value == ")":
                    return out, True
                if not (sep.kind == "special" and sep.value == ","):
                    raise SieveError(sep.line, "expecting ',' or end of test list ')', but "
                                               f"found {sep.describe()}")
        return [], False

    def test(self, depth: int) -> Test:
        name = self.take()
        test = Test(name.value, name.line)
        test.arguments = self.arguments()
        test.tests, test.test_list = self.tests(depth + 1)
        return test


# -- validator --------------------------------------------------------------------------------
COMPARATOR = {"comparator": 1}
MATCH = {"is": 0, "contains": 0, "matches": 0, "regex": 0, "value": 1, "count": 1}
ADDRESS_PART = {"all": 0, "localpart": 0, "domain": 0, "user": 0, "detail": 0}
INDEX = {"index": 1, "last": 0}


@dataclass(frozen=True, slots=True)
class Spec:
    """A command's or test's shape: ``positional`` counts (min, max), tags with their
    parameter counts, the extension it needs, sub-tests (0, 1 or a list) and a block."""

    positional: tuple[int, int] = (0, 0)
    tags: dict[str, int] = field(default_factory=dict)
    extension: str | None = None
    tests: str = "none"  # none, one, list
    block: bool = False


def _tags(*groups: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for g in groups:
        out.update(g)
    return out


MATCHING = _tags(COMPARATOR, MATCH)
COMMANDS: dict[str, Spec] = {
    "require": Spec((1, 1)),
    "if": Spec(tests="one", block=True), "elsif": Spec(tests="one", block=True),
    "else": Spec(block=True),
    "stop": Spec(), "keep": Spec(tags={"flags": 1}), "discard": Spec(),
    "redirect": Spec((1, 1), {"copy": 0, "list": 0}),
    "fileinto": Spec((1, 1), {"copy": 0, "flags": 1, "create": 0, "specialuse": 1},
                     "fileinto"),
    "reject": Spec((1, 1), extension="reject"), "ereject": Spec((1, 1), extension="ereject"),
    "vacation": Spec((1, 1), {"days": 1, "seconds": 1, "subject": 1, "from": 1,
                              "addresses": 1, "mime": 0, "handle": 1}, "vacation"),
    "setflag": Spec((1, 2), extension="imap4flags"),
    "addflag": Spec((1, 2), extension="imap4flags"),
    "removeflag": Spec((1, 2), extension="imap4flags"),
    "set": Spec((2, 2), {"lower": 0, "upper": 0, "lowerfirst": 0, "upperfirst": 0,
                         "quotewildcard": 0, "quoteregex": 0, "length": 0, "encodeurl": 0},
                "variables"),
    "include": Spec((1, 1), {"personal": 0, "global": 0, "once": 0, "optional": 0},
                    "include"),
    "return": Spec(extension="include"), "global": Spec((1, 1), extension="include"),
    "notify": Spec((1, 1), {"from": 1, "importance": 1, "options": 1, "message": 1},
                   "enotify"),
    "error": Spec((1, 1), extension="ihave"),
    "foreverypart": Spec(tags={"name": 1}, extension="foreverypart", block=True),
    "break": Spec(tags={"name": 1}, extension="foreverypart"),
    "extracttext": Spec((1, 1), {"first": 1, "lower": 0, "upper": 0, "lowerfirst": 0,
                                 "upperfirst": 0, "quotewildcard": 0, "length": 0},
                        "extracttext"),
    "addheader": Spec((2, 2), {"last": 0}, "editheader"),
    "deleteheader": Spec((1, 2), _tags(MATCHING, INDEX), "editheader"),
}
TESTS: dict[str, Spec] = {
    "address": Spec((2, 2), _tags(MATCHING, ADDRESS_PART, INDEX)),
    "header": Spec((2, 2), _tags(MATCHING, INDEX, {"mime": 0, "anychild": 0})),
    "envelope": Spec((2, 2), _tags(MATCHING, ADDRESS_PART), "envelope"),
    "exists": Spec((1, 1)), "size": Spec((1, 1), {"over": 0, "under": 0}),
    "true": Spec(), "false": Spec(), "not": Spec(tests="one"),
    "allof": Spec(tests="list"), "anyof": Spec(tests="list"),
    "body": Spec((1, 1), _tags(MATCHING, {"raw": 0, "text": 0, "content": 1}), "body"),
    "date": Spec((3, 3), _tags(MATCHING, INDEX, {"zone": 1, "originalzone": 0}), "date"),
    "currentdate": Spec((2, 2), _tags(MATCHING, {"zone": 1}), "date"),
    "string": Spec((2, 2), MATCHING, "variables"),
    "hasflag": Spec((1, 2), MATCHING, "imap4flags"),
    "mailboxexists": Spec((1, 1), extension="mailbox"),
    "ihave": Spec((1, 1), extension="ihave"),
    "valid_notify_method": Spec((1, 1), extension="enotify"),
    "notify_method_capability": Spec((3, 3), MATCHING, "enotify"),
    "duplicate": Spec(tags={"handle": 1, "header": 1, "uniqueid": 1, "seconds": 1, "last": 0},
                      extension="duplicate"),
    "environment": Spec((2, 2), MATCHING, "environment"),
}
# Tags that come with an extension (whatever command or test uses them).
TAG_EXTENSIONS = {
    "copy": "copy", "flags": "imap4flags", "create": "mailbox", "regex": "regex",
    "value": "relational", "count": "relational", "user": "subaddress",
    "detail": "subaddress", "index": "index", "last": "index", "mime": "mime",
    "anychild": "mime", "seconds": "vacation-seconds", "encodeurl": "enotify",
}


def constant(test: Test) -> bool | None:
    """The value of a test made only of true, false, not, allof and anyof (else None)."""
    if test.arguments:
        return None
    if test.name in ("true", "false") and not test.tests:
        return test.name == "true"
    values = [constant(t) for t in test.tests]
    if None in values or not values:
        return None
    if test.name == "not" and len(values) == 1 and not test.test_list:
        return not values[0]
    if test.name == "allof" and test.test_list:
        return all(values)
    if test.name == "anyof" and test.test_list:
        return any(values)
    return None


# Tags that exclude each other (Pigeonhole's argument groups).
TAG_GROUPS = {
    **dict.fromkeys(("is", "contains", "matches", "regex", "value", "count"), "MATCH-TYPE"),
    **dict.fromkeys(("all", "localpart", "domain", "user", "detail"), "ADDRESS-PART"),
}
# A tag's parameter type (others take a string).
TAG_PARAMETERS = {"days": "number", "seconds": "number", "index": "number", "first": "number",
                  "addresses": "string-list", "flags": "string-list",
                  "content": "string-list", "options": "string-list"}
# Positional argument types and the names Pigeonhole's messages give them.
_KEYS = ("string-list", "key list")
ARGUMENT_TYPES: dict[str, tuple[tuple[str, str], ...]] = {
    "redirect": (("string", "address"),), "fileinto": (("string", "folder"),),
    "reject": (("string", "reason"),), "ereject": (("string", "reason"),),
    "vacation": (("string", "reason"),),
    "setflag": (("string", "variable name"), ("string-list", "list of flags")),
    "addflag": (("string", "variable name"), ("string-list", "list of flags")),
    "removeflag": (("string", "variable name"), ("string-list", "list of flags")),
    "hasflag": (("string-list", "variable list"), ("string-list", "list of flags")),
    "set": (("string", "name"), ("string", "value")),
    "include": (("string", "script-name"),), "global": (("string-list", "value"),),
    "notify": (("string", "method"),), "error": (("string", "message"),),
    "address": (("string-list", "header list"), _KEYS),
    "header": (("string-list", "header names"), _KEYS),
    "envelope": (("string-list", "envelope part"), _KEYS),
    "exists": (("string-list", "header names"),), "size": (("number", "limit"),),
    "body": (_KEYS,), "date": (("string", "header name"), ("string", "date part"), _KEYS),
    "currentdate": (("string", "date part"), _KEYS),
    "string": (("string-list", "source"), _KEYS),
    "mailboxexists": (("string-list", "mailbox-names"),),
    "ihave": (("string-list", "capabilities"),),
    "environment": (("string", "name"), _KEYS),
}
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _fits(wanted: str, arg: Argument) -> bool:
    if wanted == "string-list":
        return arg.kind in ("string", "string-list")
    return arg.kind == wanted


def _a(kind: str) -> str:
    return {"string": "a string", "string-list": "a string list", "number": "a number",
            "tag": "a tag"}.get(kind, kind)


class Validator:
    def __init__(self, extensions: frozenset[str] = EXTENSIONS,
                 personal: frozenset[str] | None = None, global_scripts: bool = False) -> None:
        self.extensions = extensions
        self.personal = personal  # the user's script names (None: no personal storage)
        self.global_scripts = global_scripts  # sieve_global is configured
        self.warnings: list[tuple[int, str]] = []
        self.params: dict[str, Argument] = {}  # the tags of the node being checked
        self.errors: list[tuple[int, str]] = []
        self.required: set[str] = set(IMPLICIT)
        self.reported: set[str] = set()
        self.require_failed = False  # then Pigeonhole checks no command blocks

    def error(self, line: int, message: str) -> None:
        self.errors.append((line, message))

    def script(self, commands: list[Command]) -> None:
        preamble = True
        for cmd in commands:
            if cmd.name == "require" and preamble:
                self.require(cmd)
                continue
            preamble = False
        self.block(commands, top=True)

    def require(self, cmd: Command) -> None:
        args = [a for a in cmd.arguments if a.kind in ("string", "string-list")]
        if len(cmd.arguments) != 1 or len(args) != 1 or cmd.tests or cmd.block is not None:
            self.error(cmd.line, "the require command requires 1 positional argument(s), "
                                 f"but {len(cmd.arguments)} is/are specified")
            return
        for name in args[0].strings:
            if name in self.extensions or name in IMPLICIT:
                self.required.add(name)
            else:
                self.require_failed = True
                self.error(cmd.line, f"require command: unknown Sieve capability `{name}'")

    def block(self, commands: list[Command], *, top: bool = False) -> None:
        previous: Command | None = None
        preamble = top
        decided = False  # an earlier branch of this if chain always runs
        for cmd in commands:
            if cmd.name == "require":
                if not preamble:
                    self.error(cmd.line, "require commands can only be placed at top level "
                                         "at the beginning of the file")
                previous = cmd
                continue
            preamble = False
            if cmd.name in ("elsif", "else") and (previous is None or
                                                  previous.name not in ("if", "elsif")):
                self.error(cmd.line, f"the {cmd.name} command must follow an if or elseif "
                                     "command")
            # Pigeonhole drops the blocks it can tell never run (``if false``, branches
            # after ``if true``) before checking them; so does cote, for the same verdicts.
            if cmd.name == "if":
                decided = False
            value = constant(cmd.tests[0]) if len(cmd.tests) == 1 and not cmd.test_list \
                else None
            dead = cmd.name in ("if", "elsif", "else") and (decided or value is False)
            if cmd.name in ("if", "elsif") and value is True and not dead:
                decided = True
            self.command(cmd, skip_block=dead)
            previous = cmd

    def command(self, cmd: Command, *, skip_block: bool = False) -> None:
        spec = COMMANDS.get(cmd.name)
        if spec is None or (spec.extension and spec.extension not in self.required):
            self.unknown("command", cmd.name, cmd.line)
            return
        self.shape("command", spec, cmd)
        if spec.block and cmd.block is None:
            self.error(cmd.line, f"the {cmd.name} command requires a command block, but it "
                                 "is missing")
        elif not spec.block and cmd.block is not None:
            self.error(cmd.line, f"the {cmd.name} command does not accept a command block")
        # ``if ihave "x" { ... }``: the block may use what the server lacks.
        if cmd.block is not None and not skip_block and not (
                cmd.tests and cmd.tests[0].name == "ihave" and "ihave" in self.required):
            self.block(cmd.block)

    def unknown(self, kind: str, name: str, line: int) -> None:
        key = f"{kind}:{name}"
        if key not in self.reported:
            self.reported.add(key)
            self.error(line, f"unknown {kind} '{name}' (only reported once at first "
                             "occurrence)")

    def shape(self, kind: str, spec: Spec, node: Test) -> None:
        positional = self.tagged(kind, spec, node)
        if positional is not None:
            self.positional(kind, spec, node, positional)
            self.subtests(kind, spec, node)
        for test in node.tests:
            self.test(test)

    def tagged(self, kind: str, spec: Spec, node: Test) -> list[Argument] | None:
        """Check the tags and their parameters; the positional arguments, or None when an
        unknown tag ends the checks (as Pigeonhole's validator stops there)."""
        name, arguments = node.name, node.arguments
        positional: list[Argument] = []
        groups: dict[str, str] = {}
        self.params = {}
        i = 0
        while i < len(arguments):
            arg = arguments[i]
            i += 1
            if arg.kind != "tag":
                positional.append(arg)
                continue
            params = spec.tags.get(arg.tag)
            needed = TAG_EXTENSIONS.get(arg.tag)
            if params is None or (needed and needed not in self.required):
                key = f"tag:{name}:{arg.tag}"
                if key not in self.reported:
                    self.reported.add(key)
                    self.error(arg.line, f"unknown tagged argument ':{arg.tag}' for the {name} "
                                         f"{kind} (reported only once at first occurrence)")
                return None
            group = TAG_GROUPS.get(arg.tag)
            if group is not None:
                if group in groups:
                    self.error(arg.line, f"encountered duplicate {group} argument (:{arg.tag}) "
                                         f"for the {name} {kind}")
                groups[group] = arg.tag
            if params:
                found = arguments[i] if i < len(arguments) else None
                wanted = TAG_PARAMETERS.get(arg.tag, "string")
                if found is None or found.kind == "tag" or not _fits(wanted, found):
                    what = "no parameters were found" if found is None or found.kind == "tag" \
                        else f"{_a(found.kind)} was found"
                    self.error(arg.line, f"the :{arg.tag} tag for the {name} {kind} requires "
                                         f"{_a(wanted)} as parameter, but {what}")
                    return None
                if arg.tag == "comparator":
                    self.comparator(found)
                self.params[arg.tag] = found
            else:
                self.params[arg.tag] = arg
            i += params
        if name == "size":
            count = sum(1 for a in arguments if a.kind == "tag" and a.tag in ("over", "under"))
            if count > 1:
                self.error(node.line, "exactly one of the ':under' or ':over' tags must be "
                                      "specified for the size test, but more were found")
            elif not count:
                self.error(node.line, "the size test requires either the :under or the "
                                      ":over tag to be specified")
        return positional

    def positional(self, kind: str, spec: Spec, node: Test,
                   positional: list[Argument]) -> None:
        name, count = node.name, len(positional)
        if name in ("setflag", "addflag", "removeflag") and count >= 2 \
                and "variables" not in self.required:
            self.error(node.line, f"the {name} command only allows for the specification of "
                                  "a variable name when the variables extension is active")
            return
        low, high = spec.positional
        if not low <= count <= high:
            want = str(low) if low == high else f"{low}-{high}"
            self.error(node.line, f"the {name} {kind} requires {want} positional "
                                  f"argument(s), but {count} is/are specified")
            return
        types = ARGUMENT_TYPES.get(name, ())
        if name in ("setflag", "addflag", "removeflag", "hasflag") and count == 1:
            types = types[1:]
        for index, (arg, (wanted, label)) in enumerate(zip(positional, types, strict=False),
                                                        start=1):
            if not _fits(wanted, arg):
                self.error(arg.line, f"the {name} {kind} expects {_a(wanted)} as argument "
                                     f"{index} ({label}), but {_a(arg.kind)} was found")
                return
        if name == "set" and positional[0].kind == "string":
            variable = positional[0].strings[0]
            if not _VARIABLE.fullmatch(variable):
                self.error(node.line, f"invalid variable name '{variable}'")
        self.semantics(node, positional)

    def constant(self, arg: Argument | None) -> list[str]:
        """The strings of ``arg`` that are known now (no variables to expand at run time)."""
        if arg is None or arg.kind not in ("string", "string-list"):
            return []
        if "variables" in self.required:
            return [s for s in arg.strings if "${" not in s]
        return list(arg.strings)

    def first(self, arg: Argument | None, judge: Callable[[str], str | None]) -> str | None:
        for value in self.constant(arg):
            problem = judge(value)
            if problem:
                return problem
        return None

    def semantics(self, node: Test, args: list[Argument]) -> None:
        """Pigeonhole's checks of argument values (sieve_semantics); errors and warnings."""
        name, line, params = node.name, node.line, self.params
        first = args[0] if args else None
        errors: list[str | None] = []
        warnings: list[str | None] = []
        if name == "address":
            errors.append(self.first(first, sem.address_header))
        elif name == "envelope":
            errors.append(self.first(first, sem.envelope_part))
        elif name == "redirect":
            errors.append(self.first(first, sem.redirect_address))
        elif name == "notify":
            errors.append(self.first(first, sem.notify_method))
            if self.constant(first) == ["mailto:"]:
                warnings.append("notify command: mailto URI: notification URI specifies no "
                                "recipients")
        elif name == "include":
            errors.append(self.include(first, params))
        elif name == "header":
            warnings.append(self.first(first, sem.header_name))
        elif name == "date" and len(args) > 1:
            warnings.append(self.first(args[1], sem.date_part))
        elif name == "currentdate":
            warnings.append(self.first(first, sem.date_part))
        elif name in ("setflag", "addflag", "removeflag") and args[-1].kind == "string":
            # (Pigeonhole checks a single flag string, not the members of a list)
            warnings.append(self.first(args[-1], functools.partial(sem.imap_flag,
                                                                   command=name)))
        elif name == "vacation" and "days" in params and params["days"].kind == "number" \
                and params["days"].number < 1:
            warnings.append(f"specified :days value '{params['days'].number}' is under the "
                            "minimum")
        for tag in ("value", "count"):
            if tag in params:
                errors.append(self.first(params[tag], functools.partial(sem.relational, tag)))
        if "regex" in params and args:
            errors.append(self.first(args[-1], sem.regex))
        for problem in errors:
            if problem:
                self.error(line, problem)
        for problem in warnings:
            if problem:
                self.warnings.append((line, problem))

    def include(self, arg: Argument | None, params: dict[str, Argument]) -> str | None:
        for script in self.constant(arg):
            if not valid_name(script):
                return f"include: invalid script name '{script}'"
            where = "global" if "global" in params else "personal"
            if (where == "global" and not self.global_scripts) or \
                    (where == "personal" and self.personal is None):
                return (f"include: {where} location for included script `{script}' is "
                        "unavailable (contact system administrator for more information)")
            if where == "personal" and self.personal is not None \
                    and script not in self.personal:
                self.warnings.append((arg.line if arg else 0, f"included personal script "
                                      f"'{script}' does not exist (ignored during upload)"))
        return None

    def subtests(self, kind: str, spec: Spec, node: Test) -> None:
        name, line, tests, test_list = node.name, node.line, node.tests, node.test_list
        if spec.tests == "one" and (not tests or test_list):
            self.error(line, f"the {name} {kind} requires one sub-test, but none is specified"
                       if not tests else f"the {name} {kind} requires one sub-test, but a "
                                         "list of tests is specified")
        elif spec.tests == "list" and tests and not test_list:
            self.error(line, f"the {name} {kind} requires a list of sub-tests, but a single "
                             "test is specified")
        elif spec.tests == "list" and not tests:
            self.error(line, f"the {name} {kind} requires a list of sub-tests, but none is "
                             "specified")
        elif spec.tests == "none" and tests:
            self.error(line, f"the {name} {kind} accepts no sub-tests, but tests are "
                             "specified")

    def comparator(self, arg: Argument) -> None:
        if arg.kind == "string" and f"comparator-{arg.strings[0]}" not in self.required:
            self.error(arg.line, f"unknown comparator '{arg.strings[0]}'")

    def test(self, test: Test) -> None:
        spec = TESTS.get(test.name)
        if spec is None or (spec.extension and spec.extension not in self.required):
            self.unknown("test", test.name, test.line)
            return
        self.shape("test", spec, test)


@dataclass(frozen=True, slots=True)
class Report:
    """Pigeonhole-shaped message lines: ``errors`` empty means the script is valid."""

    errors: list[str]
    warnings: list[str]


@dataclass(frozen=True, slots=True)
class Context:
    """Where the script is checked: the enabled extensions (sieve_extensions), the user's
    scripts for ``include :personal`` (None: no personal storage, as for sievec) and
    whether global scripts are configured (sieve_global)."""

    extensions: frozenset[str] = EXTENSIONS
    personal: frozenset[str] | None = None
    global_scripts: bool = False


def check(script: bytes, max_errors: int = MAX_ERRORS, context: Context = Context()
          ) -> list[str]:
    """Pigeonhole-shaped error lines for ``script``; an empty list when it is valid."""
    return compile_report(script, max_errors, context).errors


def compile_report(script: bytes, max_errors: int = MAX_ERRORS,
                   context: Context = Context()) -> Report:
    """The errors and warnings Pigeonhole's compiler would report; never raises."""
    warnings: list[str] = []
    errors = _errors(script, max_errors, warnings, context)
    return Report(errors, [] if errors else warnings)


def _errors(script: bytes, max_errors: int, warnings: list[str],
            context: Context) -> list[str]:
    try:
        text = script.decode("utf-8")
    except UnicodeDecodeError as e:
        line = script[:e.start].count(b"\n") + 1
        return [f"line {line}: error: invalid UTF-8 in script.", "error: parse failed."]
    try:
        commands = Parser(tokenize(text, warnings)).script()
    except SieveError as e:
        return [f"line {e.line}: error: {e.message}.", "error: parse failed."]
    except RecursionError:
        return ["error: script nests too deeply.", "error: parse failed."]
    validator = Validator(context.extensions, context.personal, context.global_scripts)
    validator.script(commands)
    warnings += [f"line {ln}: warning: {msg}." for ln, msg in validator.warnings]
    if not validator.errors:
        return []
    lines = [f"line {ln}: error: {msg}." for ln, msg in validator.errors[:max_errors]]
    return [*lines, "error: validation failed."]
