"""driver = ldap: cote and Dovecot on the same dovecot-ldap.conf.ext files and slapd, in both
password-lookup mode (userPassword read and checked by the daemon) and auth_bind mode (a bind
as the user), plus hostile names, LIST, concurrency and a slapd restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.authdb.wire import Pair, b64, converse, list_users, plain, start_pair, user_lookup
from tests.support.env import mail_user
from tests.support.slapd import SUFFIX, SlapdServer, slapd_available, ssha

pytestmark = pytest.mark.skipif(not slapd_available(), reason="slapd not installed")

PEOPLE = f"ou=people,{SUFFIX}"


def person(uid: str, password: str, extra: str = "") -> str:
    vmail = mail_user()
    return f"""\
dn: uid={uid},{PEOPLE}
objectClass: inetOrgPerson
objectClass: posixAccount
cn: {uid}
sn: {uid}
uid: {uid}
uidNumber: {vmail.pw_uid}
gidNumber: {vmail.pw_gid}
homeDirectory: /home/{uid}
userPassword: {password}
{extra}
"""


def directory() -> str:
    return "\n".join([
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\n"
        f"dc: example\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
        person("alice", ssha("alicepw"), "description: *:storage=1G\n"
               "mail: alice@example.com"),
        person("bob", ssha("bob's \\pw"), "employeeNumber: 42"),
        person("carol", ssha("carolpw"), "employeeType: Y\ndepartmentNumber: Account disabled"),
        person("dave", "{PLAIN}davepw"),
    ])


def conf_ext(server: SlapdServer, *, auth_bind: bool, userdn: bool = False) -> str:
    bind = "auth_bind = yes\n" if auth_bind else ""
    if userdn:
        bind += f"auth_bind_userdn = uid=%u,{PEOPLE}\n"
    return f"""\
# an admin's dovecot-ldap.conf.ext
uris = ldap://127.0.0.2:1 {server.uri}
dn = {server.root_dn}
dnpass = "{server.root_pw}"
ldap_version = 3
base = {SUFFIX}
scope = subtree
deref = never
{bind}default_pass_scheme = SSHA
pass_filter = (&(objectClass=posixAccount)(uid=%u))
pass_attrs = uid=user, userPassword=password, employeeType=nologin, \\
    departmentNumber=reason, homeDirectory=userdb_home, uidNumber=userdb_uid
user_filter = (&(objectClass=posixAccount)(uid=%u))
user_attrs = homeDirectory=home, uidNumber=uid, gidNumber=gid, \\
    =mail=maildir:%{{ldap:homeDirectory}}/Maildir, description=quota_rule, \\
    =quota_rule2=*:messages=%{{ldap:employeeNumber:7}}
iterate_filter = (objectClass=posixAccount)
iterate_attrs = uid=user
"""


def blocks(ext: str) -> str:
    return f"""\
passdb {{
  driver = ldap
  args = {ext}
}}
userdb {{
  driver = ldap
  args = {ext}
}}
"""


@pytest.fixture(scope="module")
def server() -> Iterator[SlapdServer]:
    with SlapdServer() as s:
        s.add(directory())
        yield s


def _pair(server: SlapdServer, name: str, **kw: bool) -> Iterator[Pair]:
    ext = server.dir / name
    ext.write_text(conf_ext(server, **kw))
    ext.chmod(0o644)
    yield from start_pair(blocks(str(ext)))


@pytest.fixture(scope="module")
def lookup_pair(server: SlapdServer) -> Iterator[Pair]:
    yield from _pair(server, "lookup.conf.ext", auth_bind=False)


@pytest.fixture(scope="module")
def bind_pair(server: SlapdServer) -> Iterator[Pair]:
    yield from _pair(server, "bind.conf.ext", auth_bind=True)


@pytest.fixture(scope="module")
def userdn_pair(server: SlapdServer) -> Iterator[Pair]:
    yield from _pair(server, "userdn.conf.ext", auth_bind=True, userdn=True)


HOSTILE = ["*)(uid=*", "*", "alice)(|(uid=*", "a' OR '1'='1", "al\\2ace", "x\\", "A" * 1024]

CONVERSATIONS: dict[str, list[tuple[str, ...]]] = {
    "ssha ok": [plain("alice", "alicepw")],
    "wrong password": [plain("alice", "nope")],
    "empty password": [plain("alice", "")],
    "unknown user": [plain("ghost", "x")],
    "upper-case name": [plain("ALICE", "alicepw")],
    "password with quote and backslash": [plain("bob", "bob's \\pw")],
    "disabled (nologin)": [plain("carol", "carolpw")],
    "login mechanism": [("AUTH", "1", "LOGIN", "service=imap", "secured", "no-penalty"),
                        ("CONT", "1", b64(b"alice")), ("CONT", "1", b64(b"alicepw"))],
    **{f"hostile {i}": [plain(u, "x")] for i, u in enumerate(HOSTILE)},
    "hostile wildcard with alice's password": [plain("*", "alicepw")],
}


def _compare(pair: Pair, steps: list[tuple[str, ...]]) -> list[str]:
    theirs_path, ours_path = pair.sockets("auth-client")
    theirs, ours = converse(theirs_path, steps), converse(ours_path, steps)
    assert ours == theirs
    return ours


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_lookup_mode_matches_dovecot(lookup_pair: Pair, name: str) -> None:
    ours = _compare(lookup_pair, CONVERSATIONS[name])
    if name.startswith("hostile"):
        assert ours[-1].startswith("FAIL")


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_auth_bind_matches_dovecot(bind_pair: Pair, name: str) -> None:
    ours = _compare(bind_pair, CONVERSATIONS[name])
    if name.startswith("hostile"):
        assert ours[-1].startswith("FAIL")


@pytest.mark.parametrize("name", ["ssha ok", "wrong password", "unknown user", "empty password",
                                  "hostile 0", "hostile 2"])
def test_auth_bind_userdn_matches_dovecot(userdn_pair: Pair, name: str) -> None:
    _compare(userdn_pair, CONVERSATIONS[name])


@pytest.mark.parametrize("user", ["alice", "bob", "carol", "dave", "ghost", "ALICE",
                                  *HOSTILE[:-1], "B" * 900, "alice\x010*"])
def test_user_lookup_matches_dovecot(lookup_pair: Pair, user: str) -> None:
    theirs_path, ours_path = lookup_pair.sockets("auth-master")
    theirs, ours = user_lookup(theirs_path, user), user_lookup(ours_path, user)
    if "\x010" in user:  # escaped NUL: Dovecot cuts the name there, cote finds no one
        assert ours == "NOTFOUND\t7"
        assert theirs == user_lookup(theirs_path, user.split("\x01", maxsplit=1)[0])
        return
    assert ours == theirs
    if user in HOSTILE or user.startswith(("B", "alice\x01")):
        assert ours.startswith("NOTFOUND")


def test_list_matches_dovecot(lookup_pair: Pair) -> None:
    theirs_path, ours_path = lookup_pair.sockets("auth-master")
    ours = list_users(ours_path)
    assert {"alice", "bob", "carol", "dave"} <= set(ours)
    assert ours == list_users(theirs_path)


@pytest.mark.parametrize("pattern", ["*", "a*", "*o*", "nobody*"])
def test_coteadm_user_iterates_like_doveadm(lookup_pair: Pair, pattern: str) -> None:
    """``coteadm user '*'``: iterate_filter/iterate_attrs list the directory's users."""
    theirs, ours = lookup_pair.admin("user", pattern)
    assert ours == theirs
    if pattern == "*":
        assert {"alice", "bob", "carol", "dave"} <= set(ours[1].split()), ours


def test_concurrent_lookups(lookup_pair: Pair) -> None:
    _, ours_path = lookup_pair.sockets("auth-master")
    names = ["alice", "bob", "ghost", "dave"] * 10
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda u: user_lookup(ours_path, u), names))
    for name, answer in zip(names, answers, strict=True):
        assert answer.startswith("NOTFOUND" if name == "ghost" else "USER"), (name, answer)


def test_slapd_outage_fails_fast_and_recovers(server: SlapdServer, bind_pair: Pair) -> None:
    _, ours_path = bind_pair.sockets("auth-client")
    assert converse(ours_path, [plain("alice", "alicepw")])[0].startswith("OK")
    server.stop()
    try:
        for _ in range(2):
            start = time.monotonic()
            reply = converse(ours_path, [plain("alice", "alicepw")])[0]
            assert reply.startswith("FAIL\t1\t") and "code=temp_fail" in reply, reply
            assert time.monotonic() - start < 3
    finally:
        server.start()
    deadline = time.monotonic() + 10
    while True:
        reply = converse(ours_path, [plain("alice", "alicepw")])[0]
        if reply.startswith("OK") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert reply.startswith("OK"), reply


@pytest.fixture(scope="module")
def tls_server() -> Iterator[SlapdServer]:
    with SlapdServer(tls=True) as s:
        s.add(directory())
        yield s


def tls_conf(server: SlapdServer, how: str) -> str:
    conf = conf_ext(server, auth_bind=how == "starttls")
    conf += f"tls_ca_cert_file = {server.ca_file}\ntls_require_cert = demand\n"
    if how == "starttls":
        return conf + "tls = yes\n"
    if how == "sasl-external":
        d = server.dir
        conf = conf.replace(f"dn = {server.root_dn}\n", "").replace(
            f'dnpass = "{server.root_pw}"\n', "")
        return conf + (f"tls = yes\ntls_cert_file = {d / 'client.pem'}\n"
                       f"tls_key_file = {d / 'client.key'}\nsasl_bind = yes\n"
                       "sasl_mech = EXTERNAL\n")
    return conf.replace(f"uris = ldap://127.0.0.2:1 {server.uri}", f"uris = {server.ldaps_uri}")


@pytest.fixture(scope="module", params=["starttls", "ldaps", "sasl-external"])
def tls_pair(request: pytest.FixtureRequest, tls_server: SlapdServer) -> Iterator[Pair]:
    ext = tls_server.dir / f"{request.param}.conf.ext"
    ext.write_text(tls_conf(tls_server, request.param))
    ext.chmod(0o644)
    yield from start_pair(blocks(str(ext)))


@pytest.mark.parametrize("name", ["ssha ok", "wrong password", "unknown user", "hostile 0"])
def test_tls_matches_dovecot(tls_pair: Pair, name: str) -> None:
    ours = _compare(tls_pair, CONVERSATIONS[name])
    assert ours[-1].startswith("OK" if name == "ssha ok" else "FAIL")
    theirs_path, ours_path = tls_pair.sockets("auth-master")
    assert user_lookup(ours_path, "alice") == user_lookup(theirs_path, "alice")


def test_tls_with_an_unknown_ca_fails(tls_server: SlapdServer) -> None:
    """tls_require_cert = demand with a CA that did not sign slapd's certificate: no
    connection, so the lookup fails (temp_fail) instead of trusting the server."""
    ext = tls_server.dir / "wrong-ca.conf.ext"
    ext.write_text(tls_conf(tls_server, "starttls").replace(
        str(tls_server.ca_file), "/etc/ssl/certs/ca-certificates.crt"))
    ext.chmod(0o644)
    for pair in start_pair(blocks(str(ext))):
        _, ours_path = pair.sockets("auth-client")
        reply = converse(ours_path, [plain("alice", "alicepw")])[0]
        assert reply.startswith("FAIL") and "code=temp_fail" in reply, reply
