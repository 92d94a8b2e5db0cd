"""coteadm pw against doveadm pw: same hashes where deterministic, same checks, texts, exit codes."""

from __future__ import annotations

import subprocess

import pytest

from tests.adm.conftest import COTEADM
from tests.support.dovecot import DOVEADM


def run(prog: str, *args: str, stdin: str = "") -> tuple[int, str, str]:
    p = subprocess.run([prog, "pw", *args], capture_output=True, text=True, input=stdin,
                       timeout=30)
    return p.returncode, p.stdout, p.stderr


@pytest.mark.parametrize("args", [
    ("-s", "SHA256", "-p", "x"),
    ("-s", "sha256.hex", "-p", "x"),
    ("-s", "SHA256.B64", "-p", "x", "-V"),
    ("-s", "PLAIN", "-p", "secret"),
    ("-s", "CRAM-MD5", "-p", "x", "-u", "foo"),
    ("-s", "DIGEST-MD5", "-p", "x", "-u", "foo@bar"),
    ("-s", "PLAIN-MD5", "-p", "pw"),
    ("-t", "{PLAIN}x", "-p", "x"),
    ("-s", "SHA256", "-t", "{PLAIN}x", "-p", "x"),
    ("-t", "{PLAIN}x", "-p", "y"),
    ("-t", "garbage", "-p", "x"),
    ("-t", "{FOO}x", "-p", "x"),
    ("-t", "{SSHA}short", "-p", "x"),
    ("-t", "{SHA256}LXEWQrcmsEQBYnyp+6wy9chTD7GQPMTbAiWHF5IaSIE=", "-p", "x"),
    ("-s", "FOO", "-p", "x"),
    ("-s", "DIGEST-MD5", "-p", "x"),
    ("-Z",),
    ("extra", "-p", "x"),
])
def test_same_as_doveadm(args: tuple[str, ...]) -> None:
    assert run(str(COTEADM), *args) == run(DOVEADM, *args)


@pytest.mark.parametrize("scheme", ["SHA512-CRYPT", "SSHA256", "BLF-CRYPT", "PBKDF2",
                                    "SCRAM-SHA-256", "ARGON2ID", "CRYPT"])
def test_salted_hashes_cross_verify(scheme: str) -> None:
    rounds = {"BLF-CRYPT": ["-r", "5"], "CRYPT": ["-r", "5"], "SHA512-CRYPT": ["-r", "1000"],
              "PBKDF2": ["-r", "1000"]}.get(scheme, [])
    rc, out, _ = run(str(COTEADM), "-s", scheme, "-p", "pw1", *rounds)
    assert rc == 0 and out.startswith("{" + scheme + "}")
    hashed = out.strip()
    assert run(DOVEADM, "-t", hashed, "-p", "pw1") == (0, hashed + " (verified)\n", "")
    assert run(str(COTEADM), "-t", hashed, "-p", "pw1") == (0, hashed + " (verified)\n", "")
    assert run(str(COTEADM), "-t", hashed, "-p", "no")[0] == 75


def test_dovecot_hash_verified_by_cote() -> None:
    rc, out, _ = run(DOVEADM, "-s", "SHA512-CRYPT", "-p", "abc")
    assert rc == 0
    assert run(str(COTEADM), "-t", out.strip(), "-p", "abc")[:2] == \
        (0, out.strip() + " (verified)\n")


def test_default_scheme_and_stdin_password() -> None:
    rc, out, _ = run(str(COTEADM), stdin="a\na\n")
    assert rc == 0 and out.startswith("{CRYPT}$2y$05$")
    assert run(str(COTEADM), "-t", out.strip(), stdin="a\na\n")[0] == 0
    assert run(str(COTEADM), "-s", "PLAIN", stdin="a\nb\n") == \
        run(DOVEADM, "-s", "PLAIN", stdin="a\nb\n")
    assert run(str(COTEADM), "-s", "PLAIN", stdin="a\na\n") == (0, "{PLAIN}a\n", "")


def test_list_has_dovecots_schemes() -> None:
    rc, out, _ = run(str(COTEADM), "-l")
    rc2, out2, _ = run(DOVEADM, "-l")
    assert rc == rc2 == 0
    assert set(out.split()) == set(out2.split())
