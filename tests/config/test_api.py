"""The load() API the other processes use: typed values, sections with Dovecot's built-in
services, plugin settings, warnings for settings cote does not implement yet."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cote.config import Config, ConfigError, load, parse
from cote.config.implemented import IMPLEMENTED
from tests.config.conftest import coteconf, doveconf


@pytest.fixture(scope="module")
def limits(tree: Path) -> Config:
    return load(str(tree / "configs" / "service_limits.conf"))


def test_typed_globals(limits: Config) -> None:
    assert limits.get("default_process_limit") == 500
    assert limits.get("default_vsz_limit") == 512 * 1024 * 1024
    assert limits.get("default_idle_kill") == 120.0
    assert limits.get("listen") == "192.0.2.1, ::"
    assert limits.get("protocols") == "imap pop3 lmtp submission"
    assert limits.get("submission_max_mail_size") == 50 * 1024 * 1024
    # untouched settings have Dovecot's defaults
    assert limits.get("base_dir") == "/run/dovecot"
    assert limits.get("auth_cache_ttl") == 3600.0
    assert limits.get("ssl") == "yes"
    assert limits.get("disable_plaintext_auth") is True
    assert limits.get("config_cache_size") == 1024 * 1024
    with pytest.raises(KeyError):
        limits.get("no_such_setting")


def test_services_include_builtins_with_listeners(limits: Config) -> None:
    services = {s.name: s for s in limits.sections("service")}
    assert {"imap-login", "pop3-login", "imap", "auth", "lmtp", "anvil", "log", "stats"} <= set(services)
    login = services["imap-login"]
    assert login.file is not None and login.line is not None
    listeners = {lst.name: lst for lst in login.sections("inet_listener")}
    assert listeners["imap"].get("port") == 143
    assert listeners["imap"].get("address") == "192.0.2.1"
    assert listeners["imaps"].get("ssl") is True
    assert listeners["imaps"].get("reuse_port") is True
    assert login.get("service_count") == 0
    assert login.get("process_min_avail") == 4
    assert login.get("vsz_limit") == 1 << 30
    assert login.get("user") == "dovenull"          # $default_login_user expanded
    assert login.get("chroot") == "login"
    pop3 = {lst.name: lst.get("port") for lst in services["pop3-login"].sections("inet_listener")}
    assert pop3 == {"pop3": 0, "pop3s": 0}            # port = 0 disables a listener
    imap = services["imap"]
    master = {lst.name: lst for lst in imap.sections("unix_listener")}
    assert master["imap-master"].get("mode") == 0o660
    assert master["imap-master"].get("group") == "mail"
    assert master["login/imap"].get("mode") == 0o666   # built-in listener, default kept
    assert imap.get("idle_kill") == 3600.0
    assert services["auth"].get("user") == "dovecot"
    assert services["anvil"].file is None            # not in the file: built-in only
    lmtp = {lst.name: lst.get("port") for lst in services["lmtp"].sections("inet_listener")}
    assert lmtp == {"lmtp": 24}


def test_namespaces_passdb_plugin(tree: Path) -> None:
    ns_cfg = load(str(tree / "configs" / "namespaces_special_use.conf"))
    inbox = next(n for n in ns_cfg.sections("namespace") if n.name == "inbox")
    assert inbox.get("inbox") is True
    assert inbox.get("separator") == "/"
    assert inbox.get("type") == "private"
    boxes = {m.name: m for m in inbox.sections("mailbox")}
    assert boxes["Sent Messages"].get("special_use") == "\\Sent"
    assert boxes["Trash"].get("autoexpunge") == 14 * 86400.0
    assert boxes["Junk"].get("auto") == "create"
    assert boxes["Drafts"].get("auto") == "subscribe"
    quota = load(str(tree / "configs" / "quota_warnings.conf"))
    plugin = quota.plugin()
    assert plugin["quota_rule"] == "*:storage=1G"
    assert plugin["quota_status_overquota"] == "552 5.2.2 Mailbox is full"
    assert quota.get("mail_plugins") == " quota"
    assert quota.lookup(protocol="imap").get("mail_plugins") == " quota imap_quota"
    masters = load(str(tree / "configs" / "master_users.conf"))
    passdbs = masters.sections("passdb")
    assert [p.get("driver") for p in passdbs] == ["passwd-file", "static", "checkpassword"]
    assert passdbs[0].get("master") is True
    assert passdbs[0].get("result_success") == "continue"
    assert passdbs[2].get("skip") == "authenticated"
    assert passdbs[1].get("args") == "password=support-secret allow_nets=127.0.0.1/32"


def test_file_and_variable_expansion(tree: Path) -> None:
    ssl = load(str(tree / "configs" / "ssl_hardening.conf"))
    assert ssl.get("ssl_cert") == (tree / "configs" / "ssl" / "server.pem").read_text()
    assert str(ssl.get("ssl_key")).startswith("-----BEGIN PRIVATE KEY-----")
    assert ssl.get("ssl") == "required"
    exp = load(str(tree / "configs" / "mail_plugins_expansion.conf"))
    assert exp.get("submission_host") == "mx.example.org"
    assert exp.lookup(protocol="lmtp").get("mail_plugins") == "quota zlib notify sieve"


def test_warnings_for_unimplemented_settings(tree: Path) -> None:
    conf = tree / "unimplemented.conf"
    conf.write_text("base_dir = /run/cote-test\n"
                    "director_servers = 10.0.0.1\n"
                    "service director {\n"
                    "  vsz_limit = 1G\n"
                    "}\n")
    cfg = load(str(conf))
    assert f"{conf} line 2: director_servers is not implemented by cote yet" in "\n".join(
        cfg.warnings)
    assert not any("base_dir" in w for w in cfg.warnings)     # implemented: quiet
    # every explicitly set setting is either implemented or warned about, never ignored
    office = load(str(tree / "configs" / "small_office.conf"))
    for key in office.settings():
        warned = any(f": {key} is not implemented" in w for w in office.warnings)
        assert warned == (key not in IMPLEMENTED), key
    assert "protocols" in IMPLEMENTED


def test_lenient_parse_defers_missing_files(tree: Path) -> None:
    path = str(tree / "broken" / "missing_file_x.conf")
    cfg, deferred = parse(path, strict=False)
    assert cfg.setting("ssl_cert") is not None
    assert [e.line for e in deferred] == [2]
    with pytest.raises(ConfigError, match=re.escape("ssl_cert: Can't open file ssl/missing.pem")):
        load(path)


def test_debian_stock_tree_parses() -> None:
    cfg, _ = parse("/etc/dovecot/dovecot.conf", strict=False)
    assert cfg.get("protocols") == " imap lmtp sieve pop3"
    assert [p.get("driver") for p in cfg.sections("passdb")] == ["pam"]
    assert cfg.plugin()["sieve"] == "file:~/sieve;active=~/.dovecot.sieve"


def test_warnings_match_doveconf(tree: Path) -> None:
    """doveconf's warnings (ambiguous '#', a global setting after a filter) come out the same."""
    conf = tree / "warnings.conf"
    conf.write_text("mail_plugins = quota\n"
                    "protocol imap {\n"
                    "  mail_plugins = $mail_plugins imap_quota\n"
                    "}\n"
                    "login_greeting = hello#world\n"
                    "mail_plugins = $mail_plugins zlib\n")
    dove = doveconf(tree, "-c", "warnings.conf", "-n")
    cote = coteconf(tree, "-c", "warnings.conf", "-n")
    assert cote.rc == dove.rc == 0
    expected = {line.split(": Warning: ", 1)[1] for line in dove.err.splitlines()
                if ": Warning: " in line}
    got = {line.split(": Warning: ", 1)[1] for line in cote.err.splitlines()
           if ": Warning: " in line}
    assert len(expected) == 2
    assert expected <= got
    assert cote.body == dove.body
