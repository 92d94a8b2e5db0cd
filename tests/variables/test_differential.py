"""cote.variables against Debian's Dovecot: the same templates, the same users, the same output.

Mail-user context: ``doveadm user -e TEMPLATE USER``. Auth context: passwd-file extra fields
expanded by the auth process and shown by ``doveadm auth test``.
"""

from __future__ import annotations

import random
import socket
import subprocess

import pytest

from cote.variables import VariableError, expand, user_values
from tests.support.dovecot import DOVEADM, DovecotOracle
from tests.support.env import mail_user
from tests.variables.conftest import (
    AUTH_INFO,
    AUTH_TEMPLATES,
    AUTH_USERS,
    BROKEN_USER,
    MAIL_USERS,
    PLAIN_FIELDS,
)

pytestmark = pytest.mark.oracle

SEP = "\x1f"

BASIC = [
    "%u", "%n", "%d", "%s", "%h", "%i", "%l", "%r", "%%", "plain text", "100%% sure",
    "%{user}", "%{username}", "%{domain}", "%{service}", "%{home}", "%{uid}", "%{gid}",
    "%{hostname}", "%{auth_user}", "%{auth_username}", "%{auth_domain}", "%{local_ip}",
    "%{remote_ip}", "%{lip}", "%{rip}", "maildir:%h/Maildir:INDEX=/var/idx/%d/%n",
    "%{user}}", "%%u", "%%%u", "%L%", "{%u}", "%{env:HOME}",
    "%{env:COTE_SURELY_UNSET}", "%{env:}",
]
MODIFIERS = [f"%{m}{v}" for m in "DEHLMNRTUX" for v in "und"] + [
    "%LRu", "%RLu", "%256Nu", "%2.256Nu", "%4.256Hu", "%3RHu", "%2.10NXu", "%Xi", "%1.0Nu",
    "%-2.256Nu", "%2.-256Nu", "%8.256Nu", "%0.256Nu", "%256NRu", "%256RNu", "%NNu", "%NHu",
    "%3.5Nu", "%UNu", "%NUu", "%1Nu", "%RRu", "%N{user}", "%U{domain}", "%D{domain}",
    "%07Xi", "%2.07Xi", "%3Mu", "%3.4Mu", "%LLUu", "%TRu", "%RTu", "%DUd",
]
SUBSTRINGS = [
    "%2u", "%2.1u", "%-2.2i", "%04i", "%1.04i", "%0.-2u", "%-100.3u", "%100.2u", "%.3u",
    "%-3u", "%5.-2u", "%-5.-2u", "%08u", "%0u", "%.0u", "%-2u", "%-30u", "%-0u", "%-02i",
    "%0.-30u", "%.-2u", "%2.0u", "%05.2i", "%-1.05i", "%1.-05u", "%3.02u", "%-2.0u",
    "%-2.-1u", "%2.-100u", "%-0.2u", "%00005u", "%-.2u", "%-.-2u", "%0.0u", "%.u", "%-u",
    "%01.3u", "%04.2u", "%0.06u", "%.06u", "%2.06u", "%01.6u", "%02.6u", "%5.u", "%4.u",
    "%-5.u", "%5.03u", "%-6.03u", "%1.-4u", "%0.-5u", "%-7.2u", "%3.2{user}", "%-4{domain}",
    "%d/%1n/%2.1n/%n",
]
HASHES = [
    "%{md5:user}", "%{sha1:user}", "%{sha256:user}", "%{sha384:user}", "%{sha512:user}",
    "%{sha3-256:user}", "%{sha3-512:user}", "%{md4:user}", "%{md5;truncate=12:user}",
    "%{md5;truncate=16:user}", "%{md5;truncate=8:user}", "%{md5;truncate=4:user}",
    "%{md5;truncate=1:user}", "%{md5;truncate=0:user}", "%{md5;truncate=200:user}",
    "%{md5;truncate=20:user}", "%{sha256;rounds=3:user}", "%{sha256;salt=abc:user}",
    "%{sha256;rounds=2,salt=abc,truncate=12:user}", "%{sha1;format=base64:user}",
    "%{sha256;format=base64,truncate=32:user}", "%{md5;format=hexuc:user}",
    "%{md5;salt=a%u:user}", "%{md5:env:HOME}", "%{md5:userdb:home}", "%U{md5:user}",
    "%3{md5:user}", "%{md5;bogus=1:user}", "%{sha1;truncate=8,:user}", "%{sha1;:user}",
    "%{sha1; truncate=8:user}", "%{sha512;truncate=1000:user}", "%{md5:domain}",
    "%{md5;truncate=12,rounds=2:user}", "%{md5;salt=abc,truncate=12:user}",
    "%{md5;truncate=12,salt=abc:user}", "%{md5;salt=a=b:user}", "%{md4;rounds=2,salt=%n:user}",
    "%{sha3-256;format=base64:username}",
]
USERDB = [
    "%{userdb:home}", "%{userdb:nope:dflt}", "%{userdb:nope}", "%{userdb:uid:x}",
    "%{userdb:user}", "%{userdb:home:x:y}", "%{userdb:}", "%U{userdb:home}",
]
CONDITIONALS = [
    "%{if;%u;eq;12345;A;B}", "%{if;%i;>;100;A;B}", "%{if;abc;lt;abd;A;B}",
    "%{if;%u;*;J*;A;B}", "%{if;%u;!*;J*;A;B}", "%{if;%u;~;^[0-9]+$;A;B}",
    "%{if;%u;!~;^J;A;B}", "%{if;%d;eq;;nodomain;%Ld}",
    "%{if;%{if;%u;eq;12345;a;b};eq;a;INVALID;%Uu}", "%{if;a\\;b;eq;a\\;b;yes;no}",
    "%{if;a;eq;a;x\\:y;no}", "%{if;a;eq;a;x:y;no}", "%{if;a b;eq;a b;sp ace;no}",
    "%{if;10;==;010;1;2}", "%{if;-1;<;0;A;B}", "%{if;;eq;;E;N}", "%U{if;a;eq;a;yes;no}",
    "%{if;a;eq;a;%%;no}", "%{if;a;eq;a;\\%u;no}", "%{if;a;eq;b;yes}", "%{if;a;eq;a;yes}",
    "%{if;abc;*;a?c;A;B}", "%{if;abc;~;A;A;B}", "%{if;a;eq;a;{x};no}",
    "%{if;a;eq;a;%{user};no}", "%{if;a;eq;a;%L{user};no}", "%{if;a;eq;a;x\\\\y;no}",
    "%{if;a;eq;a;\\\\;no}", "%{if;a;eq;a;a\\b;no}", "%{if;a;eq;a;x;y}z",
    "%5{if;a;eq;a;abcdefgh;no}", "%{if;a;ne;b;Y;N}|%{if;b;gt;a;Y;N}|%{if;b;ge;b;Y;N}",
    "%{if;a;le;b;Y;N}|%{if;2;!=;3;Y;N}|%{if;2;<=;2;Y;N}|%{if;3;>=;2;Y;N}",
]
PLAIN = [
    f"%{m}{{userdb:{k}}}" for m in ("X", "E", "D", "R", "L", "U", "T", "2.1", "-3.", "04")
    for k in PLAIN_FIELDS
]
# Templates whose meaning depends on where the string ends: never batched.
ENDINGS = ["%", "a%", "%5", "%LU", "%-", "%1.", "%{user}%", "x%L", "%{if;{;eq;{;a;b}",
           "%{if;{;eq;x;a;bc}", "%{if;{;eq;x;a;bc}X", "%{us\\}er}x", "a%{user{}",
           "%{if;a;eq;a;\\{;n}}", "%{if;a;eq;a;\\};n}", "%{user}{"]
ERRORS = [
    "%{", "%{user", "x%{}y", "%Lz", "%{ user}", "%{user }", "%{foo}%z", "%z%y", "%y%z",
    "%{a}%z%{b}", "%z%{a}", "%{a}%{b}%z", "%{nope:user}", "%{md5:nope}", "%{md5}", "%{md5:}",
    "%{md5:%u}", "%{md5;format=bogus:user}", "%{md5;rounds=0:user}", "%{md5;rounds=x:user}",
    "%{md5;truncate=:user}", "%{sha1;rounds=2;salt=x:user}", "%{sha224:user}",
    "%{blake2b:user}", "%{if;a;eq;a}", "%{if;a;bogus;a;1;2}", "%{if}", "%{if;}",
    "%{if;x;==;y;1;2}", "%{if;%u;==;12345.0;A;B}", "%{if; 1;==;1;A;B}",
    "%{if;+1;==;1;A;B}", "%{if;0x10;==;16;A;B}", "%{if;99999999999999999999;>;1;A;B}",
    "%{if;a;eq;a;yes;no;extra}", "%{if;a;eq;a;}x;no}", "%{if;a\\\\;eq;a\\\\;y;n}",
    "%{if;a;eq;a;%{nope};no}", "%{if;a;eq;b;%{nope};no}", "%1.2.3u", "%0-2u", "%Au", "%{}",
    "%k", "%{session_pid}", "%{passdb:x}", "%{passdb:x:d}", "%{local_name}",
    "%{original_user}",
]
OK_TEMPLATES = BASIC + MODIFIERS + SUBSTRINGS + HASHES + USERDB + CONDITIONALS


def mail_values(oracle: DovecotOracle, user: str) -> tuple[dict[str, str | None],
                                                            dict[str, dict[str, str]]]:
    """What a cote mail process would pass for ``user`` (doveadm's mail-user table)."""
    vmail = mail_user()
    home = str(oracle.dir / "home" / user)
    values = user_values(user)
    del values["domain_first"], values["domain_last"]  # auth-only names
    values.update(service="doveadm", home=home, local_ip=None, remote_ip=None,
                  uid=str(vmail.pw_uid), gid=str(vmail.pw_gid), auth_user=user,
                  auth_username=values["username"], auth_domain=values["domain"],
                  hostname=socket.gethostname().split(".")[0])
    userdb = {"uid": str(vmail.pw_uid), "gid": str(vmail.pw_gid), "home": home}
    if user == "plain":
        userdb.update(PLAIN_FIELDS)
    return values, {"userdb": userdb}


def cote(template: str, values: dict[str, str | None], fields: dict[str, dict[str, str]]) -> str:
    try:
        return expand(template, values, fields=fields)
    except VariableError as exc:
        return f"Error: {exc}"


def doveadm_expand(oracle: DovecotOracle, user: str, template: str) -> subprocess.CompletedProcess[str]:
    """``doveadm user -e``; output decoded like cote's values (%R may split UTF-8 sequences)."""
    proc = subprocess.run([DOVEADM, "-c", str(oracle.config_path), "user", "-e", template, user],
                          capture_output=True, check=False)
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode("utf-8", "surrogateescape"),
        proc.stderr.decode("utf-8", "surrogateescape"))


def dovecot_batch(oracle: DovecotOracle, user: str, templates: list[str]) -> list[str]:
    """Expand many templates in one doveadm call (they are joined by an unused separator)."""
    proc = doveadm_expand(oracle, user, SEP.join(templates))
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    out = proc.stdout.removesuffix("\n").split(SEP)
    assert len(out) == len(templates)
    return out


def dovecot_one(oracle: DovecotOracle, user: str, template: str) -> str:
    proc = doveadm_expand(oracle, user, template)
    if proc.returncode == 0 and not proc.stderr:
        return proc.stdout.removesuffix("\n")
    prefix = f"Error: Failed to expand {template}: "
    err = proc.stderr.strip()
    assert err.startswith(prefix), err
    return "Error: " + err[len(prefix):]


@pytest.fixture(scope="module")
def mail_results(oracle: DovecotOracle) -> dict[str, dict[str, str]]:
    """Dovecot's expansion of every OK template for every mail user."""
    results: dict[str, dict[str, str]] = {}
    for user in MAIL_USERS:
        out = dovecot_batch(oracle, user, OK_TEMPLATES)
        results[user] = dict(zip(OK_TEMPLATES, out, strict=True))
    plain = [t for t in PLAIN if "%-3." not in t] + [t for t in PLAIN if "%-3." in t]
    results["plain"] = dict(zip(plain, dovecot_batch(oracle, "plain", plain), strict=True))
    return results


@pytest.mark.parametrize("template", OK_TEMPLATES)
def test_mail_context_matches_dovecot(oracle: DovecotOracle, mail_results: dict[str, dict[str, str]],
                                      template: str) -> None:
    for user in MAIL_USERS:
        values, fields = mail_values(oracle, user)
        assert cote(template, values, fields) == mail_results[user][template], user


@pytest.mark.parametrize("template", PLAIN)
def test_modifiers_on_userdb_values_match_dovecot(
        oracle: DovecotOracle, mail_results: dict[str, dict[str, str]], template: str) -> None:
    values, fields = mail_values(oracle, "plain")
    assert cote(template, values, fields) == mail_results["plain"][template]


@pytest.mark.parametrize("template", ENDINGS)
def test_template_endings_match_dovecot(oracle: DovecotOracle, template: str) -> None:
    values, fields = mail_values(oracle, "12345")
    assert cote(template, values, fields) == dovecot_one(oracle, "12345", template)


@pytest.mark.parametrize("template", ERRORS)
def test_errors_match_dovecot(oracle: DovecotOracle, template: str) -> None:
    user = "12345"
    expected = dovecot_one(oracle, user, template)
    assert expected.startswith("Error: ")
    values, fields = mail_values(oracle, user)
    assert cote(template, values, fields) == expected


def auth_values(user: str, password: str) -> tuple[dict[str, str | None], dict[str, str]]:
    values = user_values(user)
    values.update(
        service=AUTH_INFO["service"], local_ip=AUTH_INFO["lip"], remote_ip=AUTH_INFO["rip"],
        local_port=AUTH_INFO["lport"], remote_port=AUTH_INFO["rport"],
        real_remote_ip=AUTH_INFO["rip"], real_local_ip=AUTH_INFO["lip"],
        mechanism="PLAIN", password=password, pid="0", session=None, secured=None, cert=None,
        original_user=user, original_username=values["username"],
        original_domain=values["domain"], auth_user=user, auth_username=values["username"],
        auth_domain=values["domain"], master_user=None, login_user=None,
    )
    return values, {"user": user}


@pytest.mark.parametrize("user", sorted(AUTH_USERS))
def test_auth_context_matches_dovecot(oracle: DovecotOracle, user: str) -> None:
    password = AUTH_USERS[user]
    args = ["auth", "test"]
    for key, value in AUTH_INFO.items():
        args += ["-x", f"{key}={value}"]
    proc = oracle.doveadm(*args, user, password, check=False)
    assert "auth succeeded" in proc.stdout, proc.stdout + proc.stderr
    got: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("  "):
            key, _, value = line.strip().partition("=")
            got[key] = value
    values, passdb = auth_values(user, password)
    for key, template in AUTH_TEMPLATES.items():
        mine = expand(template, values, fields={"passdb": passdb})
        passdb[key] = mine  # later fields may refer to earlier ones (%{passdb:x01})
        assert mine == got[key], (key, template)


def test_auth_context_unknown_variable_fails_the_lookup_like_dovecot(
        oracle: DovecotOracle) -> None:
    user, password, fields = BROKEN_USER
    proc = oracle.doveadm("auth", "test", user, password, check=False)
    assert "auth failed" in proc.stdout
    log = oracle.log_path.read_text()
    templates = dict(f.split("=", 1) for f in fields.split())
    values, _ = auth_values(user, password)
    for key, template in templates.items():
        try:
            expand(template, values)
        except VariableError as exc:
            assert f"Failed to expand extra field {key}={template}: {exc}" in log
            break
    else:
        raise AssertionError("cote expanded every field")


PREFIXES = ["", "", "", "L", "U", "R", "T", "E", "X", "M", "D", "2", "2.", "-3.", "04", "1.2",
            "0.-2", "-2.02", "256N", "3H", "2.16N", "LR", "UM", "RX"]
VARIABLES = ["u", "n", "d", "h", "i", "s", "l", "%", "{user}", "{domain}", "{home}",
             "{userdb:home}", "{userdb:gid:x}", "{md5:user}", "{sha1;truncate=12:username}",
             "{sha256;rounds=2,format=base64:domain}", "{if;%u;eq;12345;A;%n}",
             "{if;%d;ne;;%Ld;none}", "{env:HOME}", "{rip}", "{auth_user}", "{uid}"]
LITERALS = ["x", "/", ":", ";", "{", "}", "\\", " ", ".", "-", "@", "é"]


def random_templates(seed: int, count: int) -> list[str]:
    """Well-formed templates (every %{ closed) mixing prefixes, modifiers and variables."""
    rnd = random.Random(seed)
    out = []
    for _ in range(count):
        pieces = []
        for _ in range(rnd.randint(1, 5)):
            if rnd.random() < 0.35:
                pieces.append(rnd.choice(LITERALS))
            else:
                pieces.append("%" + rnd.choice(PREFIXES) + rnd.choice(VARIABLES))
        out.append("".join(pieces))
    return out


def test_random_templates_match_dovecot(oracle: DovecotOracle) -> None:
    mismatches = []
    for i, template in enumerate(random_templates(seed=20231122, count=300)):
        user = MAIL_USERS[i % len(MAIL_USERS)]
        values, fields = mail_values(oracle, user)
        expected = dovecot_one(oracle, user, template)
        got = cote(template, values, fields)
        if got != expected:
            mismatches.append((template, user, expected, got))
    assert mismatches == []
