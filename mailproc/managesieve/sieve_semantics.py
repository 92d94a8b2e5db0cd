"""What Pigeonhole checks inside the arguments of a valid-looking Sieve script.

Constant strings only (a string with ``${...}`` under ``variables`` is left to run time, as
Pigeonhole leaves it): header names for ``address``, envelope parts, redirect addresses,
POSIX extended regular expressions (with glibc's messages), relational operators, notify
methods. Each function returns Pigeonhole's message or None; the validator decides whether
it is an error or a warning.
"""

from __future__ import annotations

import re

# Headers the address test accepts (Pigeonhole's list of address header fields).
ADDRESS_HEADERS = frozenset({
    "from", "sender", "reply-to", "to", "cc", "bcc", "resent-from", "resent-sender",
    "resent-to", "resent-cc", "resent-bcc", "resent-reply-to", "return-receipt-to",
    "errors-to", "apparently-to", "delivered-to", "mail-followup-to", "mail-reply-to",
    "x-beenthere", "x-original-to",
})
ENVELOPE_PARTS = frozenset({"from", "to", "auth"})
RELATIONAL = ("gt", "ge", "lt", "le", "eq", "ne")
DATE_PARTS = frozenset({"year", "month", "day", "date", "julian", "hour", "minute", "second",
                        "time", "iso8601", "std11", "zone", "weekday"})
SYSTEM_FLAGS = frozenset({"\\seen", "\\answered", "\\flagged", "\\deleted", "\\draft"})
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")  # dots anywhere: Pigeonhole is lenient
_QUOTED = re.compile(r'"(?:[^"\\\r\n]|\\.)*"')
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)"
                     r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[^\[\]\\]*\]")
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
_CLASSES = frozenset({"alpha", "digit", "alnum", "upper", "lower", "space", "blank", "punct",
                      "print", "graph", "cntrl", "xdigit"})


def address_header(name: str) -> str | None:
    if name.lower() in ADDRESS_HEADERS:
        return None
    return f"specified header '{name}' is not allowed for the address test"


def envelope_part(part: str) -> str | None:
    if part.lower() in ENVELOPE_PARTS:
        return None
    return f"specified envelope part '{part}' is not supported by the envelope test"


def redirect_address(address: str) -> str | None:
    """RFC 5322 addr-spec (or name-addr) as Pigeonhole parses a redirect target."""
    text = address.strip()
    m = re.fullmatch(r"[^<>]*<([^<>]*)>", text)
    if m:
        text = m.group(1).strip()
    local = _QUOTED.match(text) or _ATOM.match(text)
    if local is None:
        return f"specified redirect address '{address}' is invalid: invalid local part"
    rest = text[local.end():]
    if not rest.startswith("@"):
        return (f"specified redirect address '{address}' is invalid: invalid or lonely local "
                f"part '{local.group(0)}' (expecting '@')")
    domain = _DOMAIN.fullmatch(rest[1:])
    if domain is None:
        return f"specified redirect address '{address}' is invalid: invalid or missing domain"
    return None


def relational(tag: str, operator: str) -> str | None:
    if operator in RELATIONAL:
        return None
    return (f'the :{tag} match-type requires a constant string argument being one of "gt", '
            f'"ge", "lt", "le", "eq" or "ne", but "{operator}" was found')


def notify_method(uri: str) -> str | None:
    scheme = uri.split(":", 1)[0]
    if scheme.lower() == "mailto" and ":" in uri:
        return None
    return f"notify command: invalid method '{scheme}'"


def regex(pattern: str) -> str | None:
    """A POSIX extended regular expression as glibc's regcomp() judges it."""
    problem = _ere_problem(pattern)
    if problem is None:
        return None
    return f"invalid regular expression '{pattern}' for regex match: {problem}"


def _ere_problem(p: str) -> str | None:
    depth = 0
    i, n = 0, len(p)
    can_repeat = False  # something precedes that a repetition operator may apply to
    while i < n:
        c = p[i]
        if c == "\\":
            i += 2
            can_repeat = True
            continue
        if c in "*+?":
            if not can_repeat:
                return "invalid preceding regular expression"
            i += 1
            continue
        if c == "{":
            end = p.find("}", i)
            if end < 0:
                return "unmatched \\{"
            if not can_repeat:
                return "invalid preceding regular expression"
            m = re.fullmatch(r"(\d*)(,?)(\d*)", p[i + 1:end])
            if m is None or (m.group(1) == "" and m.group(2) == ""):
                return "invalid content of \\{\\}"
            low = int(m.group(1) or 0)
            if m.group(3) and int(m.group(3)) < low:
                return "invalid content of \\{\\}"
            i = end + 1
            continue
        if c == "[":
            if i + 1 == n:
                return "invalid regular expression"  # glibc's answer to a final '['
            j = i + 1
            if j < n and p[j] == "^":
                j += 1
            if j < n and p[j] == "]":
                j += 1
            while j < n and p[j] != "]":
                if p.startswith("[:", j):
                    close = p.find(":]", j + 2)
                    if close < 0:
                        return "unmatched [, [^, [:, [., or [="
                    if p[j + 2:close] not in _CLASSES:
                        return "invalid character class name"
                    j = close + 2
                    continue
                j += 1
            if j >= n:
                return "unmatched [, [^, [:, [., or [="
            i = j + 1
            can_repeat = True
            continue
        if c == "(":
            depth += 1
            can_repeat = False
            i += 1
            continue
        if c == ")" and depth:
            depth -= 1
            can_repeat = True
            i += 1
            continue
        if c == "|":
            can_repeat = False
            i += 1
            continue
        can_repeat = c not in "^"
        i += 1
    if depth:
        return "unmatched ( or \\("
    return None


# -- warnings ---------------------------------------------------------------------------------
def date_part(part: str) -> str | None:
    if part.lower() in DATE_PARTS:
        return None
    return f"specified date part `{part}' is not known"


def header_name(name: str) -> str | None:
    if _FIELD_NAME.fullmatch(name):
        return None
    return f"specified header field name '{name}' is invalid"


def imap_flag(flag: str, command: str) -> str | None:
    for word in flag.split():
        if word.startswith("\\") and word.lower() not in SYSTEM_FLAGS:
            return (f"IMAP flag '{word}' specified for the {command} command is invalid and "
                    "will be ignored (only first invalid is reported)")
    return None
