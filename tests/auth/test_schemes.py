"""Password schemes against Debian's ``doveadm pw`` in both directions, plus edge cases."""

from __future__ import annotations

import hashlib
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cote.auth import schemes
from cote.auth.schemes import hmac_md5
from tests.support.dovecot import DOVEADM

PASSWORD = "pässwörd €:x"
WRONG = "Pässwörd €:x"
USER = "user1@example.org"

ALL_SCHEMES = [
    "PLAIN", "CLEAR", "CLEARTEXT", "CRYPT", "DES-CRYPT", "MD5-CRYPT", "SHA256-CRYPT",
    "SHA512-CRYPT", "BLF-CRYPT", "ARGON2I", "ARGON2ID", "SSHA", "SSHA256", "SSHA512", "SHA",
    "SHA1", "SHA256", "SHA512", "PBKDF2", "CRAM-MD5", "HMAC-MD5", "SCRAM-SHA-1",
    "SCRAM-SHA-256", "PLAIN-MD5", "LDAP-MD5", "PLAIN-MD4", "MD5", "SMD5", "DIGEST-MD5", "OTP",
]
# Encoded variants: every scheme with both suffixes (Argon2, memory-hungry, with one).
ENCODED = [f"{s}.{enc}" for s in ALL_SCHEMES if not s.startswith("ARGON2")
           for enc in ("HEX", "B64")]
ENCODED += ["ARGON2I.HEX", "ARGON2ID.B64", "PLAIN.BASE64", "SHA256.base64", "ssha.hex"]


def doveadm_generate(scheme: str, password: str, user: str = USER) -> str:
    out = subprocess.run([DOVEADM, "pw", "-s", scheme, "-u", user, "-p", password],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def doveadm_verifies(stored: str, password: str, user: str = USER) -> bool:
    out = subprocess.run([DOVEADM, "pw", "-t", stored, "-u", user, "-p", password],
                         capture_output=True, text=True)
    return out.returncode == 0 and "(verified)" in out.stdout


@pytest.mark.oracle
@pytest.mark.parametrize("scheme", ALL_SCHEMES + ENCODED)
def test_dovecot_hash_verifies_in_cote(scheme: str) -> None:
    stored = doveadm_generate(scheme, PASSWORD)
    assert schemes.verify(stored, PASSWORD.encode(), user=USER)
    assert not schemes.verify(stored, WRONG.encode(), user=USER)


@pytest.mark.oracle
@pytest.mark.parametrize("scheme", ALL_SCHEMES + ENCODED)
def test_cote_hash_verifies_in_dovecot(scheme: str) -> None:
    stored = schemes.generate(scheme, PASSWORD.encode(), user=USER)
    assert stored.startswith("{" + scheme.upper() + "}")  # doveadm uppercases it too
    assert doveadm_verifies(stored, PASSWORD)
    assert not doveadm_verifies(stored, WRONG)


@pytest.mark.oracle
@pytest.mark.parametrize("scheme", ["PLAIN-MD5", "LDAP-MD5", "SHA", "SHA256", "SHA512",
                                    "CRAM-MD5", "DIGEST-MD5", "PLAIN", "PLAIN-MD4"])
def test_deterministic_schemes_produce_dovecots_bytes(scheme: str) -> None:
    assert schemes.generate(scheme, PASSWORD.encode(), user=USER) == \
        doveadm_generate(scheme, PASSWORD)


@pytest.mark.oracle
@pytest.mark.parametrize(("scheme", "rounds", "shape"), [
    ("SHA512-CRYPT", 10000, "$6$rounds=10000$"),
    ("SHA256-CRYPT", 6, "$5$rounds=1000$"),  # crypt's minimum
    ("BLF-CRYPT", 6, "$2y$06$"),
    ("CRYPT", 6, "$2y$06$"),
    ("PBKDF2", 6, "$6$"),
])
def test_rounds_like_doveadm_r(scheme: str, rounds: int, shape: str) -> None:
    out = subprocess.run([DOVEADM, "pw", "-s", scheme, "-r", str(rounds), "-p", PASSWORD],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert shape in out
    assert schemes.verify(out, PASSWORD.encode())
    ours = schemes.generate(scheme, PASSWORD.encode(), rounds=rounds)
    assert shape in ours
    assert doveadm_verifies(ours, PASSWORD) and not doveadm_verifies(ours, WRONG)


@pytest.mark.oracle
@pytest.mark.parametrize("algorithm", ["md4", "md5", "sha1"])
def test_otp_state_of_each_algorithm_verifies_in_dovecot(algorithm: str) -> None:
    digest = schemes.registry.otp_hash(algorithm, 99, "Seed42", PASSWORD.encode())
    stored = f"{{OTP}}{algorithm} 99 Seed42 {digest.hex()}"
    assert schemes.verify(stored, PASSWORD.encode())
    assert doveadm_verifies(stored, PASSWORD) and not doveadm_verifies(stored, WRONG)


@pytest.mark.oracle
def test_bcrypt_truncates_at_72_bytes_like_dovecot() -> None:
    long = "ä" * 40  # 80 bytes
    stored = doveadm_generate("BLF-CRYPT", long)
    assert schemes.verify(stored, long.encode())
    assert schemes.verify(stored, long.encode()[:72] + b"whatever")
    ours = schemes.generate("BLF-CRYPT", long.encode())
    assert ours.startswith("{BLF-CRYPT}$2y$05$")
    assert doveadm_verifies(ours, long)


@pytest.mark.oracle
def test_crypt_verifies_every_dovecot_crypt_flavour_and_legacy_forms() -> None:
    for scheme in ("DES-CRYPT", "MD5-CRYPT", "SHA256-CRYPT", "SHA512-CRYPT", "BLF-CRYPT"):
        body = doveadm_generate(scheme, PASSWORD).split("}", 1)[1]
        assert schemes.verify("{CRYPT}" + body, PASSWORD.encode())
        assert schemes.verify(body, PASSWORD.encode(), default_scheme="CRYPT")
    md5 = doveadm_generate("MD5-CRYPT", PASSWORD).split("}", 1)[1]
    # A bare $1$salt$hash is MD5-CRYPT whatever the default, and trailing $junk is ignored.
    assert schemes.verify(md5 + "$junk", PASSWORD.encode(), default_scheme="PLAIN")
    assert doveadm_verifies(md5 + "$junk", PASSWORD)
    # {MD5} also accepts a PLAIN-MD5 digest (hex or base64).
    digest = doveadm_generate("PLAIN-MD5", PASSWORD).split("}", 1)[1]
    assert schemes.verify("{MD5}" + digest, PASSWORD.encode())
    assert schemes.verify("{MD5}" + digest.upper(), PASSWORD.encode())


@pytest.mark.oracle
@pytest.mark.parametrize(("stored", "message"), [
    ("{FOO}x", "Unknown scheme"),
    ("{PLAIN.foo}x", "Unknown scheme"),
    ("{ plain }x", "Unknown scheme"),
    ("{}x", "Unknown scheme"),
    ("{SHA}9Rfd8dMqES/xrVXGbRsSyzjn6Pc", "Input isn't valid base64 encoded data"),
    ("{SSHA}!!!!", "Input isn't valid base64 encoded data"),
    ("{SHA.HEX}9Rfd8dMqES/xrVXGbRsSyzjn6Pc=", "Input isn't valid HEX encoded data"),
    ("{SHA}YWJj", "Input length isn't valid (3 instead of 20)"),
    ("{SSHA}YWJj", "SSHA password is too short"),
    ("{SCRAM-SHA-1}4096,abc", "Invalid SCRAM-SHA-1 passdb entry format"),
    ("{PBKDF2}$1$salt$5000$00$extra", "Invalid PBKDF2 passdb entry format"),
    ("{PLAIN-TRUNC}abc", "PLAIN-TRUNC missing length: prefix"),
    ("{BLF-CRYPT}$6$abc$def", "Password is not blowfish password"),
])
def test_invalid_stored_passwords_give_dovecots_errors(stored: str, message: str) -> None:
    with pytest.raises(schemes.SchemeError) as exc:
        schemes.verify(stored, b"a")
    assert str(exc.value) == message
    out = subprocess.run([DOVEADM, "pw", "-t", stored, "-p", "a"], capture_output=True, text=True)
    assert out.returncode != 0 and message in out.stderr


@pytest.mark.oracle
def test_plain_trunc_allows_longer_passwords_with_matching_prefix() -> None:
    assert schemes.verify("{PLAIN-TRUNC}3-abc", b"abcdef")
    assert doveadm_verifies("{PLAIN-TRUNC}3-abc", "abcdef")
    assert not schemes.verify("{PLAIN-TRUNC}4-abc", b"abcdef")
    assert not doveadm_verifies("{PLAIN-TRUNC}4-abc", "abcdef")
    assert schemes.verify("{PLAIN-TRUNC}4-abc", b"abc")


def test_scheme_errors_carry_the_auth_log_wording() -> None:
    cases = {
        "{FOO}abc": "Unknown scheme FOO",
        "{SHA}abc": "Password data is not valid for scheme SHA: "
                    "Input isn't valid base64 encoded data",
        "{SSHA}YWJj": "Invalid password in passdb: SSHA password is too short",
    }
    for stored, log in cases.items():
        with pytest.raises(schemes.SchemeError) as exc:
            schemes.verify(stored, b"x")
        assert exc.value.log == log


def test_default_scheme_applies_without_prefix() -> None:
    assert schemes.verify("secret", b"secret", default_scheme="PLAIN")
    with pytest.raises(schemes.SchemeError):  # "secret" is no SHA digest
        schemes.verify("secret", b"secret", default_scheme="SHA")
    sha = schemes.generate("SHA256", b"secret").split("}", 1)[1]
    assert schemes.verify(sha, b"secret", default_scheme="sha256")
    assert not schemes.verify(sha, b"secreT", default_scheme="SHA256")


def test_digest_md5_needs_user_and_splits_realm_at_last_at() -> None:
    with pytest.raises(schemes.SchemeError):
        schemes.generate("DIGEST-MD5", b"pass")
    raw = schemes.credentials("{PLAIN}pass", "DIGEST-MD5", user="a@b@c")
    assert raw == hashlib.md5(b"a@b:c:pass").digest()


def test_credentials_from_plaintext_and_own_scheme() -> None:
    context = schemes.credentials("{PLAIN}tanstaaftanstaaf", "CRAM-MD5")
    assert context == hmac_md5.cram_context(b"tanstaaftanstaaf")
    stored = schemes.generate("HMAC-MD5", b"tanstaaftanstaaf")
    assert schemes.credentials(stored, "CRAM-MD5") == context
    assert schemes.credentials("{CLEAR}x", "PLAIN") == b"x"
    scram = schemes.generate("SCRAM-SHA-256", b"x")
    keys = schemes.parse_scram("sha256", schemes.credentials(scram, "SCRAM-SHA-256"))
    assert keys.iterations == 4096 and len(keys.salt) == 16
    with pytest.raises(schemes.CredentialsUnavailable) as exc:
        schemes.credentials("{SHA512-CRYPT}$6$abc$def", "CRAM-MD5")
    assert str(exc.value) == "Requested CRAM-MD5 scheme, but we have only SHA512-CRYPT"


def test_expensive_schemes_are_flagged() -> None:
    assert schemes.is_expensive("{BLF-CRYPT}$2y$05$x")
    assert schemes.is_expensive("$6$abc", default_scheme="CRYPT")
    assert not schemes.is_expensive("{SSHA256}abc")
    assert not schemes.is_expensive("{PLAIN}x")


CHEAP = ["PLAIN", "SHA", "SSHA", "SSHA512", "SMD5", "PLAIN-MD5", "LDAP-MD5", "CRAM-MD5",
         "DIGEST-MD5", "SHA256.HEX", "PLAIN.B64", "MD5-CRYPT"]


@settings(max_examples=60, deadline=None)
@given(scheme=st.sampled_from(CHEAP), password=st.binary(max_size=100),
       other=st.binary(max_size=100))
def test_generate_then_verify_round_trips(scheme: str, password: bytes, other: bytes) -> None:
    if scheme == "MD5-CRYPT" and b"\0" in password + other:
        return  # crypt(3) takes C strings
    stored = schemes.generate(scheme, password, user="u@realm")
    assert schemes.verify(stored, password, user="u@realm")
    if other != password:
        assert not schemes.verify(stored, other, user="u@realm")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_stored_text_never_raises_anything_but_scheme_error(stored: str) -> None:
    for default in ("PLAIN", "CRYPT", "SHA256", "CRAM-MD5", "SCRAM-SHA-1", "PBKDF2"):
        try:
            schemes.verify(stored, b"pw", user="u", default_scheme=default)
        except schemes.SchemeError:
            pass


def test_expensive_verifications_run_in_parallel_threads_correctly() -> None:
    stored = [schemes.generate(s, f"pw-{i}".encode())
              for i, s in enumerate(["SHA512-CRYPT", "BLF-CRYPT", "SHA256-CRYPT", "PBKDF2"] * 3)]
    jobs = [(h, f"pw-{i}".encode(), True) for i, h in enumerate(stored)]
    jobs += [(h, f"pw-{i + 1}".encode(), False) for i, h in enumerate(stored)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda job: schemes.verify(job[0], job[1]), jobs))
    assert results == [expected for _, _, expected in jobs]
