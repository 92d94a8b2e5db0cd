"""Dovecot's password schemes: ``{SCHEME}`` parsing, verification, generation, credentials.

A stored password is ``{SCHEME[.B64|.BASE64|.HEX]}data`` or bare ``data`` (then the passdb's
``default_pass_scheme`` applies; a bare ``$1$salt$hash`` is always MD5-CRYPT). Each scheme has a
default encoding of its raw bytes (none, base64 or hex); for fixed-size digests without an
explicit suffix the encoding is guessed from the length, as Dovecot does. Verification either
regenerates the raw hash and compares it in constant time, or (salted and crypt-style schemes)
runs the scheme's own check.

Errors in the stored data (unknown scheme, bad encoding, malformed hash) raise ``SchemeError``
with Dovecot's wording; the auth daemon logs them and answers an internal failure, as Dovecot
does, rather than a plain password mismatch. Expensive schemes (crypt family, bcrypt, Argon2,
PBKDF2, SCRAM) block for their whole cost: ``is_expensive`` tells the daemon to run them in a
worker thread; the cheap digests are cheaper than a thread hop.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass

import argon2
import bcrypt
from argon2 import exceptions as argon2_exceptions
from argon2.low_level import Type as Argon2Type

from cote.auth.schemes import hmac_md5, xcrypt


class SchemeError(ValueError):
    """The stored password cannot be used: unknown scheme or data invalid for its scheme.

    ``str(error)`` is the short reason (as ``doveadm pw -t`` prints it); ``log`` the line the
    auth process logs as an error ("Unknown scheme FOO", "Password data is not valid for
    scheme SHA: …", "Invalid password in passdb: …").
    """

    def __init__(self, message: str, log: str | None = None) -> None:
        super().__init__(message)
        self.log = log or message


class CredentialsUnavailable(SchemeError):
    """A mechanism asked for credentials that cannot be derived from the stored password."""


class Encoding(enum.Enum):
    NONE = "none"
    BASE64 = "base64"
    HEX = "hex"


Generate = Callable[[bytes, str], bytes]
Verify = Callable[[bytes, bytes, str], bool]
GenerateRounds = Callable[[bytes, int], bytes]


@dataclass(frozen=True, slots=True)
class Scheme:
    """One password scheme. ``family`` groups aliases (SHA/SHA1, PLAIN/CLEAR, CRAM-MD5/HMAC-MD5)."""

    name: str
    family: str
    encoding: Encoding
    raw_len: int
    generate: Generate
    verify: Verify | None = None
    expensive: bool = False
    with_rounds: GenerateRounds | None = None  # ``doveadm pw -r``: cost/rounds/iterations


# -- generators and verifiers -----------------------------------------------------------


def _digest(name: str) -> Generate:
    def generate(password: bytes, user: str) -> bytes:
        return hashlib.new(name, password).digest()

    return generate


def _salted(name: str, label: str) -> tuple[Generate, Verify]:
    size = hashlib.new(name).digest_size

    def generate(password: bytes, user: str) -> bytes:
        salt = secrets.token_bytes(4)
        return hashlib.new(name, password + salt).digest() + salt

    def verify(password: bytes, raw: bytes, user: str) -> bool:
        if len(raw) <= size:
            raise SchemeError(f"{label} password is too short")
        digest = hashlib.new(name, password + raw[size:]).digest()
        return hmac.compare_digest(digest, raw[:size])

    return generate, verify


def _plain(password: bytes, user: str) -> bytes:
    return password


def _plain_trunc_verify(password: bytes, raw: bytes, user: str) -> bool:
    m = re.match(rb"([0-9]*)-", raw)
    if m is None:
        raise SchemeError("PLAIN-TRUNC missing length: prefix")
    trunc_len = int(m.group(1) or b"0")
    stored = raw[m.end():]
    if len(stored) == trunc_len and len(password) >= trunc_len:
        return hmac.compare_digest(stored, password[:trunc_len])
    return hmac.compare_digest(stored, password)


def _crypt_generate(prefix: str, salt_len: int) -> Generate:
    def generate(password: bytes, user: str) -> bytes:
        setting = (prefix + xcrypt.random_salt(salt_len)).encode()
        result = xcrypt.crypt(password, setting)
        if result is None:
            raise SchemeError(f"crypt() does not support {prefix or 'DES'} salts")
        return result

    return generate


def _sha_crypt_rounds(prefix: str) -> GenerateRounds:
    def generate(password: bytes, rounds: int) -> bytes:
        # Dovecot's libc clamps rounds into 1000..999999999; libxcrypt would refuse them.
        rounds = min(max(rounds, 1000), 999_999_999)
        setting = f"{prefix}rounds={rounds}${xcrypt.random_salt(16)}".encode()
        result = xcrypt.crypt(password, setting)
        if result is None:
            raise SchemeError(f"crypt() rejected rounds={rounds}")
        return result

    return generate


def _crypt_verify(password: bytes, raw: bytes, user: str) -> bool:
    if len(raw) > 4 and raw.startswith(b"$2") and raw[3:4] == b"$":
        return _blf_verify(password, raw, user)
    if not raw:
        return False
    result = xcrypt.crypt(password, raw)
    return result is not None and hmac.compare_digest(result, raw)


def _md5_crypt_verify(password: bytes, raw: bytes, user: str) -> bool:
    if not raw.startswith(b"$1$"):
        return False
    result = xcrypt.crypt(password, raw)
    return result is not None and hmac.compare_digest(result, raw)


def _md5_verify(password: bytes, raw: bytes, user: str) -> bool:
    """{MD5}: an MD5-CRYPT string, or else a PLAIN-MD5 digest (hex or base64)."""
    if raw.startswith(b"$1$"):
        return _md5_crypt_verify(password, raw, user)
    try:
        digest = _decode(raw.decode("ascii", "replace"), SCHEMES["PLAIN-MD5"], None)
    except SchemeError:
        raise SchemeError("Not a valid MD5-CRYPT or PLAIN-MD5 password") from None
    return hmac.compare_digest(hashlib.md5(password, usedforsecurity=False).digest(), digest)


BCRYPT_MAX_PASSWORD = 72
BLF_ROUNDS = 5


def _blf_generate(password: bytes, user: str) -> bytes:
    return _blf_rounds(password, BLF_ROUNDS)


def _blf_rounds(password: bytes, rounds: int) -> bytes:
    try:
        salt = bcrypt.gensalt(rounds)
    except ValueError:
        raise SchemeError(f"Invalid blowfish cost {rounds} (4-31)") from None
    hashed = bcrypt.hashpw(password[:BCRYPT_MAX_PASSWORD], salt)
    return b"$2y$" + hashed[4:]


def _blf_verify(password: bytes, raw: bytes, user: str) -> bool:
    if not raw.startswith(b"$2"):
        raise SchemeError("Password is not blowfish password")
    password = password[:BCRYPT_MAX_PASSWORD]
    if raw[2:4] in (b"a$", b"b$", b"y$") and b"\0" not in password:
        try:
            return bcrypt.checkpw(password, raw)
        except ValueError:
            return False
    result = xcrypt.crypt(password, raw)  # $2x$ and other legacy variants
    return result is not None and hmac.compare_digest(result, raw)


# libsodium's (opslimit, memlimit KiB) levels, which Dovecot picks from ``rounds``.
_ARGON2_LEVELS = {
    Argon2Type.I: ((8, 524288), (6, 131072), (0, 32768)),
    Argon2Type.ID: ((4, 1048576), (0, 65536)),
}


def _argon2(kind: Argon2Type, time_cost: int,
            memory_cost: int) -> tuple[Generate, Verify, GenerateRounds]:
    hasher = argon2.PasswordHasher(time_cost=time_cost, memory_cost=memory_cost,
                                   parallelism=1, hash_len=32, salt_len=16, type=kind)

    def generate(password: bytes, user: str) -> bytes:
        return hasher.hash(password).encode()

    def with_rounds(password: bytes, rounds: int) -> bytes:
        memory = next(m for ops, m in _ARGON2_LEVELS[kind] if rounds >= ops)
        return argon2.PasswordHasher(time_cost=rounds, memory_cost=memory, parallelism=1,
                                     hash_len=32, salt_len=16, type=kind).hash(password).encode()

    def verify(password: bytes, raw: bytes, user: str) -> bool:
        # Like libsodium's crypto_pwhash_str_verify: the hash names its own variant.
        if raw.startswith(b"$argon2id$"):
            variant = Argon2Type.ID
        elif raw.startswith(b"$argon2i$"):
            variant = Argon2Type.I
        else:
            return False
        try:
            return argon2.low_level.verify_secret(raw, password, variant)
        except (argon2_exceptions.VerificationError, argon2_exceptions.InvalidHashError):
            return False

    return generate, verify, with_rounds


PBKDF2_ROUNDS = 5000


def _pbkdf2_generate(password: bytes, user: str) -> bytes:
    return _pbkdf2_rounds(password, PBKDF2_ROUNDS)


def _pbkdf2_rounds(password: bytes, rounds: int) -> bytes:
    if rounds < 1:
        raise SchemeError("Invalid PBKDF2 rounds")
    salt = xcrypt.random_salt(16)
    key = hashlib.pbkdf2_hmac("sha1", password, salt.encode(), rounds)
    return f"$1${salt}${rounds}${key.hex()}".encode()


def _pbkdf2_verify(password: bytes, raw: bytes, user: str) -> bool:
    fields = raw.split(b"$")
    if len(fields) != 5 or fields[0] != b"" or fields[1] != b"1":
        raise SchemeError("Invalid PBKDF2 passdb entry format")
    if not fields[3].isdigit() or int(fields[3]) == 0:
        raise SchemeError("Invalid PBKDF2 rounds")
    key = hashlib.pbkdf2_hmac("sha1", password, fields[2], int(fields[3]))
    return hmac.compare_digest(key.hex().encode(), fields[4].lower())


SCRAM_ITERATIONS = 4096
SCRAM_MIN_ITERATIONS = 4096


@dataclass(frozen=True, slots=True)
class ScramKeys:
    """The stored form of a SCRAM credential: ``iter,salt,StoredKey,ServerKey`` (base64)."""

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    def encode(self) -> bytes:
        b64 = base64.b64encode
        return b"%d,%s,%s,%s" % (self.iterations, b64(self.salt), b64(self.stored_key),
                                 b64(self.server_key))


def scram_keys(hash_name: str, password: bytes, salt: bytes, iterations: int) -> ScramKeys:
    """Derive SCRAM keys (RFC 5802): SaltedPassword → ClientKey → StoredKey, ServerKey."""
    salted = hashlib.pbkdf2_hmac(hash_name, password, salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    return ScramKeys(iterations, salt, hashlib.new(hash_name, client_key).digest(),
                     hmac.digest(salted, b"Server Key", hash_name))


def parse_scram(hash_name: str, data: bytes) -> ScramKeys:
    """Parse ``{SCRAM-SHA-*}`` data; raises SchemeError with Dovecot's messages."""
    label = "SCRAM-SHA-1" if hash_name == "sha1" else "SCRAM-SHA-256"
    size = hashlib.new(hash_name).digest_size
    fields = data.split(b",")
    if len(fields) != 4:
        raise SchemeError(f"Invalid {label} passdb entry format")
    if not fields[0].isdigit() or not SCRAM_MIN_ITERATIONS <= int(fields[0]) <= 2**31 - 1:
        raise SchemeError(f"Invalid {label} iteration count in passdb")
    try:
        salt = base64.b64decode(fields[1], validate=True)
    except binascii.Error:
        raise SchemeError(f"Invalid {label} salt in passdb") from None
    keys = []
    for field, what in ((fields[2], "StoredKey"), (fields[3], "ServerKey")):
        try:
            key = base64.b64decode(field, validate=True)
        except binascii.Error:
            key = b""
        if len(key) != size:
            raise SchemeError(f"Invalid {label} {what} in passdb")
        keys.append(key)
    return ScramKeys(int(fields[0]), salt, keys[0], keys[1])


def _scram(hash_name: str) -> tuple[Generate, Verify]:
    def generate(password: bytes, user: str) -> bytes:
        return scram_keys(hash_name, password, secrets.token_bytes(16), SCRAM_ITERATIONS).encode()

    def verify(password: bytes, raw: bytes, user: str) -> bool:
        stored = parse_scram(hash_name, raw)
        derived = scram_keys(hash_name, password, stored.salt, stored.iterations)
        return hmac.compare_digest(derived.stored_key, stored.stored_key)

    return generate, verify


def _cram_md5(password: bytes, user: str) -> bytes:
    return hmac_md5.cram_context(password)


def digest_md5_user_realm(user: str) -> tuple[str, str]:
    """DIGEST-MD5's ``user@realm`` split at the last ``@`` (``user@domain@realm`` works)."""
    name, sep, realm = user.rpartition("@")
    return (name, realm) if sep else (user, "")


def _digest_md5(password: bytes, user: str) -> bytes:
    if not user:
        raise SchemeError("digest_md5_generate(): username not given")
    name, realm = digest_md5_user_realm(user)
    return hashlib.md5(f"{name}:{realm}:".encode() + password, usedforsecurity=False).digest()


def _md4(password: bytes, user: str) -> bytes:
    try:
        return hashlib.new("md4", password, usedforsecurity=False).digest()
    except ValueError:  # OpenSSL 3 moved MD4 to the legacy provider
        from passlib.crypto._md4 import md4  # noqa: PLC0415

        return bytes(md4(password).digest())


OTP_ALGORITHMS = ("md4", "md5", "sha1")
OTP_SEQUENCE = 1024


def _otp_fold(algorithm: str, digest: bytes) -> bytes:
    """RFC 2289 folding of a digest to 64 bits (SHA-1 with its little-endian word order)."""
    if algorithm == "sha1":
        w = list(struct.unpack(">5I", digest))
        return struct.pack("<2I", w[0] ^ w[2] ^ w[4], w[1] ^ w[3])
    return bytes(a ^ b for a, b in zip(digest[:8], digest[8:16], strict=True))


def otp_hash(algorithm: str, sequence: int, seed: str, password: bytes) -> bytes:
    """The RFC 2289 one-time password after ``sequence`` iterations (8 bytes)."""
    def digest(data: bytes) -> bytes:
        return _md4(data, "") if algorithm == "md4" else hashlib.new(
            algorithm, data, usedforsecurity=False).digest()

    result = _otp_fold(algorithm, digest(seed.lower().encode() + password))
    for _ in range(sequence):
        result = _otp_fold(algorithm, digest(result))
    return result


_OTP_STATE = re.compile(rb"(md4|md5|sha1) ([0-9]{1,5}) ([A-Za-z0-9]{1,16}) ([0-9a-fA-F]{16})")


def _otp_generate(password: bytes, user: str) -> bytes:
    seed = secrets.token_hex(8)
    digest = otp_hash("sha1", OTP_SEQUENCE, seed, password)
    return f"sha1 {OTP_SEQUENCE} {seed} {digest.hex()}".encode()


def _otp_verify(password: bytes, raw: bytes, user: str) -> bool:
    m = _OTP_STATE.fullmatch(raw.lower())
    if m is None:
        raise SchemeError("Invalid OTP data in passdb")
    algorithm, sequence, seed, stored = (g.decode() for g in m.groups())
    digest = otp_hash(algorithm, int(sequence), seed, password)
    return hmac.compare_digest(digest.hex().encode(), stored.encode())


def _build() -> dict[str, Scheme]:
    e = Encoding
    table: list[Scheme] = []

    def add(names: tuple[str, ...], encoding: Encoding, raw_len: int,  # noqa: PLR0917
            generate: Generate, verify: Verify | None = None,
            with_rounds: GenerateRounds | None = None, *,
            expensive: bool = False) -> None:
        for name in names:
            table.append(Scheme(name, names[0], encoding, raw_len, generate, verify, expensive,
                                with_rounds))

    add(("CRYPT",), e.NONE, 0, _blf_generate, _crypt_verify, _blf_rounds, expensive=True)
    # DES and MD5 crypt take well under a millisecond: cheaper than a thread hop.
    add(("DES-CRYPT",), e.NONE, 0, _crypt_generate("", 2), _crypt_verify)
    add(("MD5-CRYPT",), e.NONE, 0, _crypt_generate("$1$", 8), _md5_crypt_verify)
    add(("MD5",), e.NONE, 0, _crypt_generate("$1$", 8), _md5_verify)
    add(("SHA256-CRYPT",), e.NONE, 0, _crypt_generate("$5$", 16), _crypt_verify,
        _sha_crypt_rounds("$5$"), expensive=True)
    add(("SHA512-CRYPT",), e.NONE, 0, _crypt_generate("$6$", 16), _crypt_verify,
        _sha_crypt_rounds("$6$"), expensive=True)
    add(("BLF-CRYPT",), e.NONE, 0, _blf_generate, _blf_verify, _blf_rounds, expensive=True)
    add(("ARGON2I",), e.NONE, 0, *_argon2(Argon2Type.I, 4, 32768), expensive=True)
    add(("ARGON2ID",), e.NONE, 0, *_argon2(Argon2Type.ID, 3, 65536), expensive=True)
    add(("PLAIN", "CLEAR", "CLEARTEXT"), e.NONE, 0, _plain)
    add(("PLAIN-TRUNC",), e.NONE, 0, _plain, _plain_trunc_verify)
    add(("SHA", "SHA1"), e.BASE64, 20, _digest("sha1"))
    add(("SHA256",), e.BASE64, 32, _digest("sha256"))
    add(("SHA512",), e.BASE64, 64, _digest("sha512"))
    add(("SMD5",), e.BASE64, 0, *_salted("md5", "SMD5"))
    add(("SSHA",), e.BASE64, 0, *_salted("sha1", "SSHA"))
    add(("SSHA256",), e.BASE64, 0, *_salted("sha256", "SSHA256"))
    add(("SSHA512",), e.BASE64, 0, *_salted("sha512", "SSHA512"))
    add(("PLAIN-MD5",), e.HEX, 16, _digest("md5"))
    table.append(Scheme("LDAP-MD5", "PLAIN-MD5", e.BASE64, 16, _digest("md5")))
    add(("PLAIN-MD4",), e.HEX, 16, _md4)
    add(("CRAM-MD5", "HMAC-MD5"), e.HEX, hmac_md5.CONTEXT_LEN, _cram_md5)
    add(("DIGEST-MD5",), e.HEX, 16, _digest_md5)
    add(("PBKDF2",), e.NONE, 0, _pbkdf2_generate, _pbkdf2_verify, _pbkdf2_rounds,
        expensive=True)
    add(("SCRAM-SHA-1",), e.NONE, 0, *_scram("sha1"), expensive=True)
    add(("SCRAM-SHA-256",), e.NONE, 0, *_scram("sha256"), expensive=True)
    add(("OTP",), e.NONE, 0, _otp_generate, _otp_verify)
    return {s.name: s for s in table}


SCHEMES: dict[str, Scheme] = _build()
_SUFFIXES = {"B64": Encoding.BASE64, "BASE64": Encoding.BASE64, "HEX": Encoding.HEX}
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def register(scheme: Scheme) -> None:
    """Add a scheme (OTP and other optional ones live in their own modules)."""
    SCHEMES[scheme.name] = scheme


# -- parsing ------------------------------------------------------------------------------


def lookup(name: str) -> tuple[Scheme, Encoding | None]:
    """``SHA256.HEX`` → (SHA256, HEX); the suffix is None when not given."""
    upper = name.upper()
    explicit: Encoding | None = None
    base, dot, suffix = upper.rpartition(".")
    if dot:
        explicit = _SUFFIXES.get(suffix)
        if explicit is None:
            raise SchemeError("Unknown scheme")
        upper = base
    scheme = SCHEMES.get(upper)
    if scheme is None:
        raise SchemeError("Unknown scheme")
    return scheme, explicit


def split_stored(stored: str, default_scheme: str) -> tuple[str, str]:
    """``{SHA}abc`` → ("SHA", "abc"); a bare ``$1$…`` is MD5-CRYPT; else the default scheme."""
    if stored.startswith("$1$"):
        p = stored.find("$", 3)
        if p >= 0:
            end = stored.find("$", p + 1)
            return "MD5-CRYPT", stored if end < 0 else stored[:end]
    if stored.startswith("{"):
        end = stored.find("}")
        if end >= 0:
            return stored[1:end], stored[end + 1:]
    return default_scheme, stored


def _decode(data: str, scheme: Scheme, explicit: Encoding | None) -> bytes:
    encoding = explicit or scheme.encoding
    if explicit is None and encoding is not Encoding.NONE and scheme.raw_len:
        encoding = Encoding.HEX if len(data) == scheme.raw_len * 2 else Encoding.BASE64
    if encoding is Encoding.NONE:
        raw = data.encode("utf-8", "surrogateescape")
    elif encoding is Encoding.HEX:
        if not _HEX.fullmatch(data):
            if explicit is not None:
                raise SchemeError("Input isn't valid HEX encoded data")
            return _decode_base64(data, scheme)
        raw = bytes.fromhex(data)
    else:
        return _decode_base64(data, scheme)
    _check_len(raw, scheme)
    return raw


def _decode_base64(data: str, scheme: Scheme) -> bytes:
    try:
        raw = base64.b64decode(data.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise SchemeError("Input isn't valid base64 encoded data") from None
    _check_len(raw, scheme)
    return raw


def _check_len(raw: bytes, scheme: Scheme) -> None:
    if scheme.raw_len and len(raw) != scheme.raw_len:
        raise SchemeError(f"Input length isn't valid ({len(raw)} instead of {scheme.raw_len})")


def _encode(raw: bytes, encoding: Encoding) -> str:
    if encoding is Encoding.HEX:
        return raw.hex()
    if encoding is Encoding.BASE64:
        return base64.b64encode(raw).decode("ascii")
    return raw.decode("utf-8", "surrogateescape")


def decode_stored(stored: str, *, default_scheme: str = "CRYPT") -> tuple[Scheme, bytes]:
    """The scheme of a stored password and its raw (decoded) bytes."""
    name, data = split_stored(stored, default_scheme)
    try:
        scheme, explicit = lookup(name)
    except SchemeError as e:
        raise SchemeError(str(e), f"Unknown scheme {name.upper()}") from None
    try:
        return scheme, _decode(data, scheme, explicit)
    except SchemeError as e:
        raise SchemeError(str(e), f"Password data is not valid for scheme "
                                  f"{scheme.name}: {e}") from None


# -- public operations ----------------------------------------------------------------------


def verify(stored: str, password: bytes, *, user: str = "",
           default_scheme: str = "CRYPT") -> bool:
    """True when ``password`` matches ``stored``; SchemeError when ``stored`` is unusable.

    Blocks for the scheme's cost: see ``is_expensive``.
    """
    scheme, raw = decode_stored(stored, default_scheme=default_scheme)
    try:
        if scheme.verify is not None:
            return scheme.verify(password, raw, user)
        return hmac.compare_digest(scheme.generate(password, user), raw)
    except SchemeError as e:
        raise SchemeError(str(e), f"Invalid password in passdb: {e}") from None


def generate(scheme_name: str, password: bytes, *, user: str = "",
             rounds: int | None = None) -> str:
    """``{SCHEME}hash`` of ``password``, like ``doveadm pw -s SCHEME [-u user] [-r rounds]``.

    ``rounds`` is the cost for the schemes that have one (crypt family, bcrypt, PBKDF2,
    Argon2) and ignored by the others, as by doveadm.
    """
    scheme, explicit = lookup(scheme_name)
    if rounds is not None and scheme.with_rounds is not None:
        raw = scheme.with_rounds(password, rounds)
    else:
        raw = scheme.generate(password, user)
    return "{" + scheme_name.upper() + "}" + _encode(raw, explicit or scheme.encoding)


def is_expensive(stored: str, *, default_scheme: str = "CRYPT") -> bool:
    """Whether verifying ``stored`` is slow enough to belong in a worker thread."""
    try:
        scheme, _ = lookup(split_stored(stored, default_scheme)[0])
    except SchemeError:
        return False
    return scheme.expensive


def is_plaintext(scheme: Scheme) -> bool:
    return scheme.family == "PLAIN"


def credentials(stored: str, wanted: str, *, user: str = "",
                default_scheme: str = "CRYPT") -> bytes:
    """Raw credentials of scheme ``wanted`` for a SASL mechanism.

    The stored password's own bytes when it already is of that scheme (or an alias), else
    generated from a plaintext password; anything else raises CredentialsUnavailable
    ("Requested CRAM-MD5 scheme, but we have only SHA512-CRYPT").
    """
    scheme, raw = decode_stored(stored, default_scheme=default_scheme)
    target, _ = lookup(wanted)
    if target.family == scheme.family:
        return raw
    if not is_plaintext(scheme):
        raise CredentialsUnavailable(
            f"Requested {target.name} scheme, but we have only {scheme.name}")
    return target.generate(raw, user)


def scheme_names() -> list[str]:
    return sorted(SCHEMES)
