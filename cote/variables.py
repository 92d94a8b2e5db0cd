"""Dovecot 2.3 ``%`` mail-variable expansion, shared by every process.

Templates such as ``maildir:/var/mail/%d/%2.1n/%n``, ``%{sha256;truncate=32:user}`` or an SQL
``user_query`` are expanded per login or per message, so a template is parsed once
(:func:`compile_template`) and its :class:`Template` expanded many times.

Syntax (Dovecot 2.3, observed against ``doveadm user -e`` and ``doveadm auth test``):

* ``%x`` short variables (``%u %n %d %s %h %l %r %p %i …``; ``%%`` is a literal ``%``) and
  ``%{name}`` long ones (``%{user}``, ``%{local_ip}`` …, old names such as ``%{rip}`` too).
* ``[-][0]N`` or ``[-]OFFSET.[-][0]WIDTH`` before the variable: substring of the final value
  (offset first, then width; a negative width drops characters from the end; ``0`` before the
  width pads with zeros instead of truncating).
* Modifiers, applied left to right: ``L`` lower, ``U`` upper, ``E`` backslash-escape
  ``" ' \\``, ``X`` decimal to hex, ``R`` reverse, ``H`` old (PJW) hash, ``N`` MD5-based hash
  (``H``/``N`` take the width as a modulo and the offset as zero padding), ``M`` MD5 hex,
  ``D`` ``a.b.c`` → ``a,dc=b,dc=c``, ``T`` trim trailing whitespace.
* ``%{env:NAME}``, ``%{userdb:name[:default]}``, ``%{passdb:name[:default]}``,
  ``%{md5|sha1|…[;rounds=N,salt=S,truncate=BITS,format=hex|hexuc|base64]:field}`` and
  ``%{if;a;op;b;then[;else]}``; ``%{pid}``, ``%{uid}``, ``%{gid}``, ``%{hostname}`` work
  everywhere unless the caller supplies them.

Which variables exist is the caller's business: ``values`` maps long names to values (``None``
means "known but empty"); a name missing from it, from the old aliases and from the globals is
an :class:`UnknownVariableError`, as in Dovecot (which then fails the lookup or login).

The ``escape`` callable (SQL or LDAP quoting) is applied to each substituted value after its
modifiers and substring, never to the template's own text. Dovecot escapes the raw values
before modifiers instead; the results differ only when a modifier or substring meets a
character the escape function rewrites.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
from collections.abc import Callable, Mapping
from fnmatch import fnmatchcase
from typing import AnyStr, Final

__all__ = [
    "Template",
    "UnknownVariableError",
    "VariableError",
    "compile_template",
    "escape_backslash",
    "expand",
    "user_values",
]

Values = Mapping[str, "str | None"]
Fields = Mapping[str, Mapping[str, str]]
Escape = Callable[[str], str]


class VariableError(ValueError):
    """A template that cannot be expanded; ``str(e)`` is Dovecot's error text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownVariableError(VariableError):
    """The template names a variable that this context does not provide."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Unknown variable '%{name}'")
        self.name = name


# One-letter variables and the long names they stand for (Dovecot's auth and mail tables).
SHORT_NAMES: Final[Mapping[str, str]] = {
    "u": "user", "n": "username", "d": "domain", "s": "service", "h": "home",
    "l": "local_ip", "r": "remote_ip", "a": "local_port", "b": "remote_port",
    "p": "pid", "i": "uid", "m": "mechanism", "w": "password", "c": "secured",
    "k": "cert",
}

# Old long names still accepted by Dovecot 2.3.
ALIASES: Final[Mapping[str, str]] = {
    "lip": "local_ip", "rip": "remote_ip", "lport": "local_port", "rport": "remote_port",
    "real_lip": "real_local_ip", "real_rip": "real_remote_ip",
    "real_lport": "real_local_port", "real_rport": "real_remote_port",
    "mech": "mechanism", "orig_user": "original_user",
    "orig_username": "original_username", "orig_domain": "original_domain",
}

_MODIFIERS: Final = frozenset("DEHLMNRTUX")
_HASHES: Final[Mapping[str, str]] = {
    "md4": "md4", "md5": "md5", "sha1": "sha1", "sha256": "sha256", "sha384": "sha384",
    "sha512": "sha512", "sha3-256": "sha3_256", "sha3-512": "sha3_512",
}
_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_UPPER: Final = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_C_SPACE: Final = " \t\n\r\f\v"
_INT64: Final = 1 << 63

_hostname: str | None = None


def _global_hostname() -> str:
    global _hostname  # noqa: PLW0603 - computed once per process
    if _hostname is None:
        _hostname = os.environ.get("DOVECOT_HOSTNAME") or socket.gethostname().split(".")[0]
    return _hostname


def _global(name: str) -> str | None:
    if name == "pid":
        return str(os.getpid())
    if name == "uid":
        return str(os.geteuid())
    if name == "gid":
        return str(os.getegid())
    if name == "hostname":
        return _global_hostname()
    return None


def escape_backslash(value: str) -> str:
    """The ``%E`` modifier: a backslash before every ``"``, ``'`` and ``\\``."""
    if '"' not in value and "'" not in value and "\\" not in value:
        return value
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'")


def user_values(user: str) -> dict[str, str | None]:
    """``user``, ``username``, ``domain``, ``domain_first``, ``domain_last`` for a login name."""
    name, at, domain = user.partition("@")
    if not at:
        return {"user": user, "username": user, "domain": None,
                "domain_first": None, "domain_last": None}
    first, at2, last = domain.partition("@")
    return {"user": user, "username": name, "domain": domain,
            "domain_first": first if at2 else domain, "domain_last": last if at2 else domain}


# -- hashes used by the modifiers ------------------------------------------------------------

def _pjw_hash(data: bytes) -> int:
    h = 0
    for c in data:
        h = ((h << 4) + c) & 0xFFFFFFFF
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
            h ^= g
    return h


def _md5_hash(data: bytes) -> int:
    return int.from_bytes(hashlib.md5(data, usedforsecurity=False).digest()[:8], "big")


def _md4(data: bytes) -> bytes:
    """MD4 (RFC 1320): OpenSSL 3 no longer offers it, Dovecot's %{md4:…} still does."""
    mask = 0xFFFFFFFF

    def rotl(x: int, n: int) -> int:
        return ((x << n) | (x >> (32 - n))) & mask

    size = len(data)
    bits = (size * 8) & ((1 << 64) - 1)
    data += b"\x80" + b"\x00" * ((55 - size) % 64) + bits.to_bytes(8, "little")
    a, b, c, d = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476
    for block in range(0, len(data), 64):
        x = [int.from_bytes(data[block + i:block + i + 4], "little") for i in range(0, 64, 4)]
        aa, bb, cc, dd = a, b, c, d
        for i in range(16):
            k, s = i, (3, 7, 11, 19)[i % 4]
            f = (b & c) | (~b & d)
            a, b, c, d = d, rotl((a + f + x[k]) & mask, s), b, c
        for i in range(16):
            k, s = (i % 4) * 4 + i // 4, (3, 5, 9, 13)[i % 4]
            g = (b & c) | (b & d) | (c & d)
            a, b, c, d = d, rotl((a + g + x[k] + 0x5A827999) & mask, s), b, c
        for i in range(16):
            k = (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)[i]
            s = (3, 9, 11, 15)[i % 4]
            h = b ^ c ^ d
            a, b, c, d = d, rotl((a + h + x[k] + 0x6ED9EBA1) & mask, s), b, c
        a, b, c, d = (a + aa) & mask, (b + bb) & mask, (c + cc) & mask, (d + dd) & mask
    return b"".join(v.to_bytes(4, "little") for v in (a, b, c, d))


def _to_bytes(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def _from_bytes(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _decimal_to_hex(value: str) -> str:
    if value.isdigit() and value.isascii():
        number = int(value)
        if number < 1 << 64:
            return f"{number:x}"
    return "0"


# -- a parsed reference ----------------------------------------------------------------------

class _Ref:
    """One ``%…`` reference: where the value comes from, its modifiers and its substring."""

    __slots__ = ("composite", "key", "modifiers", "offset", "short", "width", "zero_pad")

    def __init__(self, short: str | None, key: str, modifiers: str,  # noqa: PLR0917
                 offset: int, width: int, zero_pad: bool) -> None:
        self.short = short      # the letter of %x, None for %{…}
        self.key = key          # long name, or the whole text inside %{…}
        self.modifiers = modifiers
        self.offset = offset
        self.width = width
        self.zero_pad = zero_pad
        # %{if;…} builds its value from expanded (already escaped) parts and template text.
        self.composite = short is None and (key == "if" or key.startswith("if;"))

    def apply(self, value: str) -> str:
        offset, width = self.offset, self.width
        for m in self.modifiers:
            if m == "L":
                value = value.translate(_ASCII_LOWER)
            elif m == "U":
                value = value.translate(_ASCII_UPPER)
            elif m == "E":
                value = escape_backslash(value)
            elif m == "X":
                value = _decimal_to_hex(value)
            elif m == "R":
                value = value[::-1] if value.isascii() else _from_bytes(_to_bytes(value)[::-1])
            elif m in "HN":
                # H: 32-bit PJW hash; N: the first 64 bits of MD5. The width is the modulo
                # (taken as unsigned, as C does), the low 32 bits are printed in hex.
                if m == "H":
                    number, modulo = _pjw_hash(_to_bytes(value)), width & 0xFFFFFFFF
                else:
                    number, modulo = _md5_hash(_to_bytes(value)), width & 0xFFFFFFFFFFFFFFFF
                if modulo:
                    number %= modulo
                value = f"{number & 0xFFFFFFFF:x}"
                if offset > len(value):
                    value = value.rjust(offset, "0")
                offset = width = 0
            elif m == "M":
                value = hashlib.md5(_to_bytes(value), usedforsecurity=False).hexdigest()
            elif m == "D":
                value = value.replace(".", ",dc=")
            elif m == "T":
                value = value.rstrip(_C_SPACE)
        if offset or width:
            value = _substring(value, offset, width, self.zero_pad)
        return value


def _substring(value: str, offset: int, width: int, zero_pad: bool) -> str:
    if value.isascii():
        return _cut(value, offset, width, "0" if zero_pad else None)
    # Dovecot counts bytes: cut the UTF-8 form so non-ASCII names give the same result.
    return _from_bytes(_cut(_to_bytes(value), offset, width, b"0" if zero_pad else None))


def _cut(value: AnyStr, offset: int, width: int, pad: AnyStr | None) -> AnyStr:
    size = len(value)
    if offset > 0:
        value = value[offset:] if offset < size else value[:0]
    elif offset < 0 and -offset <= size:
        value = value[size + offset:]
    if width > 0:
        value = value.rjust(width, pad) if pad is not None else value[:width]
    elif width < 0 and len(value) + width >= 0:
        value = value[: len(value) + width]
    return value


# -- parsing ---------------------------------------------------------------------------------

def _parse_number(text: str, i: int) -> tuple[int, int, int, bool]:
    """``[-][0]digits`` at ``i``: (next index, sign, number, zero-padding flag)."""
    n = len(text)
    sign = 1
    zero_pad = False
    if i < n and text[i] == "-":
        sign = -1
        i += 1
    if i < n and text[i] == "0":
        zero_pad = True
        i += 1
    start = i
    while i < n and "0" <= text[i] <= "9":
        i += 1
    return i, sign, int(text[start:i]) if i > start else 0, zero_pad


def _parse_prefix(text: str, i: int) -> tuple[int, int, int, bool, str]:
    """Parse ``[-][0]N[.[-][0]W]MODIFIERS`` at ``i`` (just after ``%``).

    Without a dot, N is the width and its sign is ignored; with one, the zero flag only
    counts after the dot.
    """
    i, sign, number, zero_pad = _parse_number(text, i)
    offset = 0
    width = number
    if i < len(text) and text[i] == ".":
        offset = sign * number
        i, sign, number, zero_pad = _parse_number(text, i + 1)
        width = sign * number
    mstart = i
    while i < len(text) and text[i] in _MODIFIERS:
        i += 1
    return i, offset, width, zero_pad, text[mstart:i]


def _find_close(text: str, i: int) -> int:
    """Where the ``%{…}`` whose ``{`` is at ``i - 1`` ends: the index of its ``}``, or
    ``len(text)`` when the braces never balance (Dovecot then takes the rest of the string).

    Every ``{`` and ``}`` counts, except one right after a backslash.
    """
    n = len(text)
    depth = 1
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return n


Part = str | _Ref


def _parse(text: str) -> list[Part]:
    parts: list[Part] = []
    literal: list[str] = []
    n = len(text)
    i = 0
    while i < n:
        pct = text.find("%", i)
        if pct < 0:
            literal.append(text[i:])
            break
        literal.append(text[i:pct])
        i, offset, width, zero_pad, modifiers = _parse_prefix(text, pct + 1)
        if i >= n:
            break
        c = text[i]
        if c == "%":
            i += 1
            if not (modifiers or offset or width):
                literal.append("%")  # %% is a literal percent sign
                continue
            # "%X%": the modifiers and substring apply to the "%" itself.
            ref = _Ref("%", "%", modifiers, offset, width, zero_pad)
            ref.composite = True
            parts.append("".join(literal))
            literal = []
            parts.append(ref)
            continue
        if c == "{":
            if text.find("}", i + 1) >= 0:
                close = _find_close(text, i + 1)
                ref = _Ref(None, text[i + 1:close], modifiers, offset, width, zero_pad)
                i = close + 1
            else:
                ref = _Ref(c, c, modifiers, offset, width, zero_pad)
                i += 1
        else:
            ref = _Ref(c, SHORT_NAMES.get(c, c), modifiers, offset, width, zero_pad)
            i += 1
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(ref)
    if literal:
        joined = "".join(literal)
        if joined:
            parts.append(joined)
    return [p for p in parts if p != ""]


def _split_escaped(text: str, sep: str, limit: int = -1) -> list[str]:
    """Split on ``sep`` where it is not preceded by a backslash and not inside a nested
    ``%{…}`` (one that is never closed protects the rest of the text)."""
    out: list[str] = []
    n = len(text)
    start = 0
    depth = 0
    i = 0
    while i < n:
        c = text[i]
        if c == "%":
            if i + 1 < n and text[i + 1] == "%":
                i += 2
                continue
            j = _parse_prefix(text, i + 1)[0]
            if j < n and text[j] == "{":
                depth += 1
                i = j + 1
            else:
                i = j
            continue
        if c == "}" and depth:
            depth -= 1
        elif c == sep and not depth and (i == 0 or text[i - 1] != "\\") and limit != 0:
            out.append(text[start:i])
            start = i + 1
            limit -= 1
        i += 1
    out.append(text[start:])
    return out


# -- expansion -------------------------------------------------------------------------------

class _Run:
    """The state of one expansion: inputs, and the unknown name to report (Dovecot's rule:
    the last unknown ``%{…}`` wins over the first unknown ``%x``)."""

    __slots__ = ("escape", "fields", "long_error", "short_error", "values")

    def __init__(self, values: Values, escape: Escape | None, fields: Fields | None) -> None:
        self.values = values
        self.escape = escape
        self.fields = fields
        self.long_error: VariableError | None = None
        self.short_error: VariableError | None = None

    def lookup(self, name: str) -> str | None:
        values = self.values
        if name in values:
            return values[name] or ""
        alias = ALIASES.get(name)
        if alias is not None and alias in values:
            return values[alias] or ""
        return _global(name)

    def expand_parts(self, parts: list[Part]) -> str:
        out: list[str] = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
                continue
            found: str | None
            if part.short is not None:
                if part.short == "%":
                    found = "%"
                elif part.short in self.values:
                    found = self.values[part.short] or ""
                else:
                    # One-letter names come from the caller only: Dovecot's %p and %i
                    # exist where the context provides them, unlike %{pid} and %{uid}.
                    found = self.values.get(part.key)
                    if found is None and part.key in self.values:
                        found = ""
                if found is None:
                    if self.short_error is None:
                        self.short_error = UnknownVariableError(part.short)
                    continue
            else:
                found = self.long(part.key)
                if found is None:
                    continue
            value = found
            value = part.apply(value) if part.modifiers or part.offset or part.width else value
            if self.escape is not None and value and not part.composite:
                value = self.escape(value)
            out.append(value)
        return "".join(out)

    def fail(self, error: VariableError) -> None:
        self.long_error = error

    def long(self, key: str) -> str | None:
        """The value of ``%{key}``; None (with the error recorded) when it has none."""
        head, colon, rest = key.partition(":")
        name, semi, params = head.partition(";")
        if name == "if":
            return self.conditional(key)
        if name in _HASHES or name == "pkcs5" or (semi and name.lower() in _HASHES):
            return self.hash(name, params, rest)
        if colon:
            if name == "env":
                return os.environ.get(rest, "")
            if name in ("userdb", "passdb"):
                provider = self.fields.get(name) if self.fields is not None else None
                if provider is None:
                    self.fail(UnknownVariableError(name))
                    return None
                field, _, default = rest.partition(":")
                if field in provider:
                    return provider[field]
                return default
            if name.lower() in _HASHES:
                self.fail(VariableError(f"Unknown hash method '{name}'"))
                return None
            self.fail(UnknownVariableError(head))
            return None
        value = self.lookup(key)
        if value is None:
            self.fail(UnknownVariableError(key))
        return value

    def hash(self, name: str, params: str, field: str) -> str | None:
        if name not in _HASHES:
            if name == "pkcs5":
                self.fail(VariableError("pkcs5 in variable expansion is not supported by cote"))
            else:
                self.fail(VariableError(f"Unknown hash method '{name}'"))
            return None
        # The field is looked up before the options are read (Dovecot's order of errors).
        value = self.long(field) if field else None
        if value is None:
            if not field:
                self.fail(UnknownVariableError(""))
            return None
        rounds, truncate, salt, fmt = 1, 0, "", "hex"
        if params:
            for item in params.split(","):
                opt, _, arg = item.partition("=")
                if opt == "rounds":
                    if not (arg.isdigit() and arg.isascii()):
                        self.fail(VariableError(
                            f"Cannot parse hash arguments:'{arg}' is not number for rounds"))
                        return None
                    rounds = int(arg)
                    if rounds < 1:
                        self.fail(VariableError(
                            "Cannot parse hash arguments:rounds must be at least 1"))
                        return None
                elif opt == "truncate":
                    if not (arg.isdigit() and arg.isascii()):
                        self.fail(VariableError(
                            f"Cannot parse hash arguments:'{arg}' is not number for truncbits"))
                        return None
                    truncate = int(arg)
                elif opt == "salt":
                    # Dovecot stops reading options after the salt.
                    salt = self.expand_parts(_parse(arg))
                    break
                elif opt == "format":
                    if arg not in ("hex", "hexuc", "base64"):
                        self.fail(VariableError(
                            f"Cannot parse hash arguments:'{arg}' is not supported format"))
                        return None
                    fmt = arg
        algorithm = _HASHES[name]
        salt_bytes = _to_bytes(salt)
        digest = _to_bytes(value)
        for _ in range(rounds):
            if algorithm == "md4":
                digest = _md4(salt_bytes + digest)
            else:
                digest = hashlib.new(algorithm, salt_bytes + digest,
                                     usedforsecurity=False).digest()
        bits = len(digest) * 8
        if 0 < truncate < bits:
            size = (truncate + 7) // 8
            number = int.from_bytes(digest[:size], "big") >> (size * 8 - truncate)
            digest = number.to_bytes(size, "big")
        if fmt == "base64":
            return base64.b64encode(digest).decode("ascii")
        # Dovecot 2.3.19 prints format=hexuc in lower case too; cote keeps its output.
        return digest.hex()

    def conditional(self, key: str) -> str | None:
        body = _split_escaped(key, ":", 1)[0]
        if body == "if":
            self.fail(VariableError("if: missing parameter(s)"))
            return None
        raw = _split_escaped(body[3:], ";") if body.startswith("if;") else []
        if raw and raw[-1] == "":
            raw.pop()  # a trailing empty parameter does not count
        params = [self.expand_parts(_parse(p.replace("\\", ""))) for p in raw]
        if len(params) not in (4, 5):
            self.fail(VariableError(
                f"if: requires four or five parameters, got {len(params)}"))
            return None
        lhs, op, rhs = params[0], params[1], params[2]
        result = _compare(lhs, op, rhs)
        if isinstance(result, VariableError):
            self.fail(result)
            return None
        if result:
            return params[3]
        return params[4] if len(params) == 5 else ""


def _number(text: str, side: str) -> int | VariableError:
    digits = text[1:] if text.startswith("-") else text
    if digits.isdigit() and digits.isascii():
        number = int(text)
        if -_INT64 <= number < _INT64:
            return number
    return VariableError(f"if: {text} ({side}) is not a number")


def _compare(lhs: str, op: str, rhs: str) -> bool | VariableError:
    if op in ("==", "!=", "<", "<=", ">", ">="):
        a = _number(lhs, "lhs")
        if isinstance(a, VariableError):
            return a
        b = _number(rhs, "rhs")
        if isinstance(b, VariableError):
            return b
        return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b,
                ">=": a >= b}[op]
    if op in ("eq", "ne", "lt", "le", "gt", "ge"):
        x, y = _to_bytes(lhs), _to_bytes(rhs)
        return {"eq": x == y, "ne": x != y, "lt": x < y, "le": x <= y, "gt": x > y,
                "ge": x >= y}[op]
    if op in ("*", "!*"):
        return fnmatchcase(lhs, rhs.replace("[", "[[]")) == (op == "*")
    if op in ("~", "!~"):
        try:
            matched = re.search(rhs, lhs) is not None
        except re.error as exc:
            return VariableError(f"if: regex failed: {exc}")
        return matched == (op == "~")
    return VariableError(f"if: Unsupported comparator '{op}'")


class Template:
    """A parsed template; :meth:`expand` is what hot paths call."""

    __slots__ = ("_parts", "has_variables", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._parts = _parse(source)
        self.has_variables = any(not isinstance(p, str) for p in self._parts)

    def expand(self, values: Values, *, escape: Escape | None = None,
               fields: Fields | None = None) -> str:
        """Expand with ``values`` (long names → value); raise :class:`VariableError`.

        ``fields`` provides ``%{userdb:…}`` / ``%{passdb:…}``: ``{"userdb": {...}}``.
        """
        parts = self._parts
        if not self.has_variables:
            return parts[0] if parts else ""  # type: ignore[return-value]
        run = _Run(values, escape, fields)
        result = run.expand_parts(parts)
        error = run.long_error or run.short_error
        if error is not None:
            raise error
        return result

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


def compile_template(template: str) -> Template:
    """Parse ``template`` once for repeated expansion."""
    return Template(template)


_cache: dict[str, Template] = {}


def cached_template(template: str) -> Template:
    """``template`` parsed once per process (a master parses before it forks)."""
    compiled = _cache.get(template)
    if compiled is None:
        if len(_cache) > 1024:
            _cache.clear()
        compiled = _cache[template] = Template(template)
    return compiled


def expand(template: str, values: Values, *, escape: Escape | None = None,
           fields: Fields | None = None) -> str:
    """Expand ``template`` once (parsed templates are cached per process)."""
    return cached_template(template).expand(values, escape=escape, fields=fields)
