"""The shipped etc/ tree: complete, accepted by doveconf and by coteconf (with the same
result), every commented example valid, every account source loadable, and runnable by
Debian's Dovecot."""

from __future__ import annotations

import imaplib
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from cote.config import load
from cote.demo import make_certificate
from tests.etc.conftest import (
    REPO,
    copy_tree,
    port_is_bound,
    require_dovecot,
    run_coteconf,
    run_doveconf,
    service_status,
    settings_lines,
    start_cote,
    start_dovecot,
    stop,
    stop_cote,
    wait_for_log,
)
from tests.support.env import free_port, remove_dir, server_dir

pytestmark = pytest.mark.oracle

ETC = REPO / "etc"
CONF_D = [
    "10-auth.conf", "10-mail.conf", "10-master.conf", "10-ssl.conf", "10-logging.conf",
    "15-lda.conf", "15-mailboxes.conf", "20-imap.conf", "20-pop3.conf", "20-lmtp.conf",
    "20-managesieve.conf", "90-quota.conf", "90-sieve.conf", "90-acl.conf",
]
AUTH_SOURCES = {
    "auth-system.conf.ext": ("pam", "passwd"),
    "auth-passwdfile.conf.ext": ("passwd-file", "passwd-file"),
    "auth-sql.conf.ext": ("sql", "sql"),
    "auth-ldap.conf.ext": ("ldap", "ldap"),
}
EXAMPLE = re.compile(r"^(\s*)#(\S|  +\S)", re.MULTILINE)


def uncomment_examples(text: str) -> str:
    """Turn ``#setting = value`` / ``#  nested`` examples into live lines; prose ("# ...")
    stays a comment."""
    return EXAMPLE.sub(r"\1\2", text)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    path = server_dir("etc-tree")
    yield path
    remove_dir(path)


def test_tree_has_every_file() -> None:
    assert (ETC / "dovecot.conf").is_file()
    for name in CONF_D:
        assert (ETC / "conf.d" / name).is_file(), name
    for name in [*AUTH_SOURCES, "auth-static.conf.ext", "auth-deny.conf.ext",
                 "auth-master.conf.ext"]:
        assert (ETC / "conf.d" / name).is_file(), name
    for name in ("dovecot-sql.conf.ext", "dovecot-ldap.conf.ext"):
        assert (ETC / name).is_file(), name


def test_every_include_points_at_a_shipped_file() -> None:
    for conf in [ETC / "dovecot.conf", *sorted((ETC / "conf.d").iterdir())]:
        for target in re.findall(r"^\s*#?!include(?:_try)? (\S+)", conf.read_text(), re.M):
            if "*" in target or target == "local.conf":
                continue
            assert (conf.parent / target).is_file(), f"{conf.name}: {target}"


def test_doveconf_accepts_the_tree() -> None:
    require_dovecot()
    proc = run_doveconf(ETC / "dovecot.conf", "-n")
    assert proc.returncode == 0, proc.stderr
    assert not proc.stderr
    lines = settings_lines(proc.stdout)
    for expected in ("protocols = imap pop3 lmtp sieve", "mail_location = maildir:~/Maildir",
                     "auth_mechanisms = plain login",
                     "ssl_cert = </etc/dovecot/private/dovecot.pem"):
        assert expected in lines


def test_coteconf_accepts_the_tree_like_doveconf() -> None:
    require_dovecot()
    mine = run_coteconf(ETC / "dovecot.conf", "-n")
    assert mine.returncode == 0, mine.stderr
    assert settings_lines(mine.stdout) == settings_lines(
        run_doveconf(ETC / "dovecot.conf", "-n").stdout)


def test_every_commented_example_is_a_valid_setting(workdir: Path) -> None:
    require_dovecot()
    config = copy_tree(workdir / "examples")
    for path in [config, *sorted((config.parent / "conf.d").iterdir())]:
        path.write_text(uncomment_examples(path.read_text()))
    theirs = run_doveconf(config, "-n")
    assert theirs.returncode == 0, theirs.stderr
    # the examples really were switched on
    assert "driver = static" in theirs.stdout
    assert "quota_rule = *:storage=1G" in theirs.stdout
    mine = run_coteconf(config, "-n")
    assert mine.returncode == 0, mine.stderr

    def comparable(out: str) -> list[str]:
        # Pigeonhole's capability lines depend on its helper process, not on the config.
        return [x for x in settings_lines(out) if not x.startswith("managesieve_")]
    assert comparable(mine.stdout) == comparable(theirs.stdout)


@pytest.mark.parametrize("source", sorted(AUTH_SOURCES))
def test_each_account_source_can_be_switched_on(workdir: Path, source: str) -> None:
    require_dovecot()
    config = copy_tree(workdir / source)
    auth = config.parent / "conf.d" / "10-auth.conf"
    text = auth.read_text().replace("!include auth-system.conf.ext", "#!include auth-system.conf.ext")
    text = text.replace(f"#!include {source}", f"!include {source}")
    auth.write_text(text)
    proc = run_doveconf(config, "-n")
    assert proc.returncode == 0, proc.stderr
    passdb, userdb = AUTH_SOURCES[source]
    assert re.search(r"passdb \{\n(  .*\n)*?  driver = " + re.escape(passdb) + "\n", proc.stdout)
    assert re.search(r"userdb \{\n(  .*\n)*?  driver = " + re.escape(userdb) + "\n", proc.stdout)
    mine = run_coteconf(config, "-n")
    assert mine.returncode == 0, mine.stderr
    assert settings_lines(mine.stdout) == settings_lines(proc.stdout)


@pytest.fixture(scope="module")
def local_tree(workdir: Path) -> Path:
    """The tree as an admin would run it on a test box: the certificate paths in 10-ssl.conf
    point at a fresh pair (Dovecot reads every ssl_cert it sees, so a later override would
    not do), and local.conf gives private directories and free ports."""
    config = copy_tree(workdir / "local")
    base = config.parent
    make_certificate(base / "cert.pem", base / "key.pem", "localhost")
    ssl_conf = base / "conf.d" / "10-ssl.conf"
    text = ssl_conf.read_text()
    assert "</etc/dovecot/private/dovecot.pem" in text
    ssl_conf.write_text(text.replace("</etc/dovecot/private/dovecot.pem", f"<{base}/cert.pem")
                        .replace("</etc/dovecot/private/dovecot.key", f"<{base}/key.pem"))
    ports = {name: free_port() for name in ("imap", "imaps", "pop3", "pop3s", "sieve")}
    (base / "local.conf").write_text(f"""\
base_dir = {base}/run
state_dir = {base}/state
instance_name = cote-etc-{base.name}
log_path = {base}/dovecot.log
listen = 127.0.0.1
service imap-login {{
  inet_listener imap {{
    port = {ports['imap']}
  }}
  inet_listener imaps {{
    port = {ports['imaps']}
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {ports['pop3']}
  }}
  inet_listener pop3s {{
    port = {ports['pop3s']}
  }}
}}
service managesieve-login {{
  inet_listener sieve {{
    port = {ports['sieve']}
  }}
}}
""")
    (base / "ports").write_text(" ".join(f"{k}={v}" for k, v in ports.items()))
    return config


def test_cote_config_loads_the_tree(local_tree: Path) -> None:
    cfg = load(str(local_tree))
    assert cfg.get("mail_location") == "maildir:~/Maildir"
    assert cfg.get("protocols") == "imap pop3 lmtp sieve"
    assert cfg.get("disable_plaintext_auth") is True
    assert [s.get("driver") for s in cfg.sections("passdb")] == ["pam"]
    assert [s.get("driver") for s in cfg.sections("userdb")] == ["passwd"]
    assert cfg.get("ssl_cert").startswith("-----BEGIN CERTIFICATE-----")


def test_dovecot_runs_the_tree(local_tree: Path) -> None:
    require_dovecot()
    ports = dict(p.split("=") for p in (local_tree.parent / "ports").read_text().split())
    proc = start_dovecot(local_tree, int(ports["imap"]), local_tree.parent / "dovecot.log")
    try:
        ctx = ssl.create_default_context(cafile=str(local_tree.parent / "cert.pem"))
        with imaplib.IMAP4("127.0.0.1", int(ports["imap"])) as imap:
            assert "STARTTLS" in imap.capabilities
            imap.starttls(ctx)
            typ, caps = imap.capability()
            assert typ == "OK" and b"AUTH=PLAIN AUTH=LOGIN" in caps[0]
        with imaplib.IMAP4_SSL("127.0.0.1", int(ports["imaps"]), ssl_context=ctx) as imap:
            assert imap.capability()[0] == "OK"
    finally:
        stop(proc)


def test_cote_runs_the_tree(local_tree: Path) -> None:
    """The same tree under cote's master: a clean start, the listeners of the services it
    runs bound on the configured ports, a clean stop."""
    base = local_tree.parent
    ports = dict(p.split("=") for p in (base / "ports").read_text().split())
    log = base / "dovecot.log"
    log.unlink(missing_ok=True)
    proc = start_cote(local_tree, base / "run", log)
    try:
        text = wait_for_log(log, "starting up")
        assert "starting up" in text
        assert " Error: " not in text and " Fatal: " not in text, text
        status = service_status(local_tree)
        owners = {"imap": "imap-login", "imaps": "imap-login", "pop3": "pop3-login",
                  "pop3s": "pop3-login", "sieve": "managesieve-login"}
        for listener, service in owners.items():
            assert port_is_bound(int(ports[listener])) == (service in status), listener
    finally:
        err = stop_cote(local_tree, proc)
        stop(proc)
    assert err == "", err + log.read_text()
