"""``coteadm pw``: generate or check password hashes like ``doveadm pw`` (no daemon needed).

    coteadm pw [-l] [-s scheme] [-p password] [-u user] [-r rounds] [-t hash] [-V]

Same output (``{SCHEME}hash``, `` (verified)`` after ``-t``/``-V``), same ``Fatal:`` texts and
exit codes (75 for a failed check or unusable scheme, 64 for bad usage).
"""

from __future__ import annotations

import getopt
import os
import sys
from collections.abc import Sequence

from cote.auth import schemes
from cote.auth.schemes import SchemeError

EX_USAGE = 64
EX_TEMPFAIL = 75
DEFAULT_SCHEME = "CRYPT"


def _fatal(text: str) -> int:
    sys.stderr.write(f"Fatal: {text}\n")
    return EX_TEMPFAIL


def _read_line() -> str | None:
    """One line from stdin byte by byte (so a second prompt gets the next line)."""
    data = b""
    while True:
        c = os.read(0, 1)
        if not c:
            return data.decode("utf-8", "surrogateescape") if data else None
        if c == b"\n":
            return data.decode("utf-8", "surrogateescape")
        data += c


def _ask_password() -> str:
    tty = sys.stdin.isatty()
    while True:
        if tty:
            sys.stderr.write("Enter new password: ")
        first = _read_line()
        if tty:
            sys.stderr.write("Retype new password: ")
        second = _read_line()
        if first is None or second is None or first == second:
            return first or ""
        sys.stderr.write("Error: Passwords don't match!\n")


def _rounds(text: str) -> int:
    digits = ""
    for ch in text.strip():
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else 0


def main(args: Sequence[str]) -> int:
    try:
        opts, rest = getopt.gnu_getopt(list(args), "lp:r:s:t:u:V")
    except getopt.GetoptError as e:
        sys.stderr.write(f"pw: invalid option -- '{e.opt}'\n")
        return EX_USAGE
    scheme = DEFAULT_SCHEME
    password: str | None = None
    user = ""
    rounds: int | None = None
    test_hash: str | None = None
    reverse = False
    list_schemes = False
    for opt, val in opts:
        if opt == "-l":
            list_schemes = True
        elif opt == "-p":
            password = val
        elif opt == "-r":
            rounds = _rounds(val)
        elif opt == "-s":
            scheme = val.upper()
        elif opt == "-t":
            test_hash = val
        elif opt == "-u":
            user = val
        elif opt == "-V":
            reverse = True
    if rest:
        sys.stderr.write(f"Error: Extraneous arguments found: {' '.join(rest)}\n")
        return EX_USAGE
    if list_schemes:
        sys.stdout.write("".join(name + " " for name in schemes.scheme_names()) + "\n")
        return 0
    if test_hash is None:
        try:
            schemes.lookup(scheme)
        except SchemeError:
            return _fatal(f"Unknown scheme: {scheme}")
    if password is None:
        password = _ask_password()
    secret = password.encode("utf-8", "surrogateescape")
    if test_hash is not None:
        if not test_hash.startswith("{") or "}" not in test_hash:
            return _fatal("Missing {scheme} prefix from hash")
        hashed = test_hash
        reverse = True
    else:
        if scheme == "DIGEST-MD5" and not user:
            return _fatal("digest_md5_generate(): username not given")
        try:
            hashed = schemes.generate(scheme, secret, user=user,
                                      rounds=rounds if rounds else None)
        except SchemeError as e:
            return _fatal(str(e))
    if reverse:
        try:
            schemes.decode_stored(hashed)
        except SchemeError as e:
            return _fatal(f"reverse decode check failed: {e}")
        try:
            ok = schemes.verify(hashed, secret, user=user)
        except SchemeError as e:
            return _fatal(f"reverse decode check failed: {e}")
        if not ok:
            return _fatal("reverse password verification check failed: Password mismatch")
        sys.stdout.write(f"{hashed} (verified)\n")
    else:
        sys.stdout.write(hashed + "\n")
    return 0
