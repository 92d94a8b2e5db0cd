"""cote's coteconf against Debian's doveconf on the same files: -n, -a and -h of every key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cote.config.dump import escape_name
from tests.config.conftest import (
    Run,
    config_names,
    coteconf,
    doveconf,
    doveconf_with_cote_defaults,
)

DEBIAN = Path("/etc/dovecot/dovecot.conf")


def keys_of_dump(lines: list[str]) -> list[str]:
    """Every setting path of a ``doveconf -a`` dump, as ``-h`` takes it (filters left out)."""
    keys: list[str] = []
    stack: list[str] = []
    counters: list[dict[str, int]] = [{}]
    skip_depth = 0
    for line in lines:
        s = line.strip()
        if skip_depth:
            skip_depth += s.endswith("{") - (s == "}")
            continue
        if s.endswith("{"):
            head = s[:-1].strip()
            kind, _, name = head.partition(" ")
            if len(name) >= 2 and name[0] == name[-1] == '"':
                name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            name = escape_name(name)
            if not stack and kind in ("protocol", "local", "remote", "local_name"):
                skip_depth = 1
                continue
            if not name and kind in ("passdb", "userdb"):
                n = counters[-1].get(kind, 0)
                counters[-1][kind] = n + 1
                name = str(n)
            stack.append(f"{kind}/{name}" if name else kind)
            counters.append({})
        elif s == "}":
            stack.pop()
            counters.pop()
        else:
            key = s.split(" = ", 1)[0] if " = " in s else s.rstrip(" =")
            keys.append("/".join([*stack, key]))
    return keys


def assert_same(cote: Run, dove: Run, again: Callable[[], Run] | None = None) -> None:
    # doveconf runs managesieve-login to fill in the sieve capability; on a loaded machine that
    # rarely fails and the lines are missing. Ask the oracle again before calling it a mismatch.
    for _ in range(2):
        if (cote.rc, cote.body) == (dove.rc, dove.body) or again is None:
            break
        dove = again()
    assert cote.rc == dove.rc, (cote.err, dove.err)
    assert cote.body == dove.body


@pytest.mark.parametrize("name", config_names())
def test_n_matches_doveconf(tree: Path, name: str) -> None:
    cwd = tree / "configs"
    assert_same(coteconf(cwd, "-c", name, "-n"), doveconf(cwd, "-c", name, "-n"),
                lambda: doveconf(cwd, "-c", name, "-n"))


@pytest.mark.parametrize("name", config_names())
def test_a_and_every_h_key_match_doveconf(tree: Path, name: str) -> None:
    cwd = tree / "configs"
    dove_a = doveconf_with_cote_defaults(cwd, "-c", name, "-a")
    assert_same(coteconf(cwd, "-c", name, "-a"), dove_a)
    keys = keys_of_dump(dove_a.body)
    assert len(keys) > 900
    dove = doveconf_with_cote_defaults(cwd, "-c", name, "-h", *keys)
    cote = coteconf(cwd, "-c", name, "-h", *keys)
    assert dove.rc == 0
    assert cote.out.splitlines() == dove.out.splitlines()


@pytest.mark.parametrize("args", [("-n",), ("-a",), ("-n", "-P")])
def test_debian_stock_tree(tree: Path, args: tuple[str, ...]) -> None:
    oracle = doveconf if "-n" in args else doveconf_with_cote_defaults
    assert_same(coteconf(tree, "-c", str(DEBIAN), *args), oracle(tree, "-c", str(DEBIAN), *args))


def test_debian_stock_every_h_key(tree: Path) -> None:
    dove_a = doveconf_with_cote_defaults(tree, "-c", str(DEBIAN), "-a")
    keys = keys_of_dump(dove_a.body)
    dove = doveconf_with_cote_defaults(tree, "-c", str(DEBIAN), "-h", *keys)
    cote = coteconf(tree, "-c", str(DEBIAN), "-h", *keys)
    assert cote.out.splitlines() == dove.out.splitlines()


@pytest.mark.parametrize("name", ["ssl_hardening.conf", "master_users.conf", "filters.conf"])
def test_show_secrets_and_expand(tree: Path, name: str) -> None:
    """-P shows hidden values, -x reads <file contents (the generated certificate)."""
    cwd = tree / "configs"
    for args in (("-n", "-P"), ("-n", "-x"), ("-n", "-P", "-x")):
        assert_same(coteconf(cwd, "-c", name, *args), doveconf(cwd, "-c", name, *args))


def test_expand_reads_certificate(tree: Path) -> None:
    cwd = tree / "configs"
    cote = coteconf(cwd, "-c", "ssl_hardening.conf", "-P", "-x", "-h", "ssl_cert")
    assert cote.out.startswith("-----BEGIN CERTIFICATE-----")
    assert cote.out == (cwd / "ssl" / "server.pem").read_text()
    hidden = coteconf(cwd, "-c", "ssl_hardening.conf", "-n")
    assert "ssl_key = # hidden, use -P to show it" in hidden.body


@pytest.mark.parametrize("filters", [
    ("protocol=imap",), ("protocol=pop3",), ("remote=10.1.2.3",), ("remote=192.168.1.7",),
    ("remote=2001:db8::5",), ("protocol=imap", "local=192.0.2.10"),
    ("protocol=pop3", "local=192.0.2.99"), ("lname=mail.example.com",),
])
def test_filtered_values_match_doveconf(tree: Path, filters: tuple[str, ...]) -> None:
    cwd = tree / "configs"
    keys = ["mail_max_userip_connections", "disable_plaintext_auth", "login_greeting",
            "ssl_cert", "ssl_key", "mail_debug", "pop3_lock_session", "imap_idle_notify_interval"]
    fargs = [a for f in filters for a in ("-f", f)]
    dove = doveconf(cwd, "-c", "filters.conf", *fargs, "-h", *keys)
    cote = coteconf(cwd, "-c", "filters.conf", *fargs, "-h", *keys)
    assert dove.rc == 0
    assert cote.out.splitlines() == dove.out.splitlines()


def _simple_set(run: Run) -> set[str]:
    # Entry-name header lines (``service/auth/unix_listener=a b``) list names in doveconf's
    # internal order; compare them as sets of names.
    out = set()
    for line in run.out.splitlines():
        key, _, value = line.partition("=")
        if key.rsplit("/", 1)[-1] in ("service", "namespace", "passdb", "userdb", "mailbox",
                                       "unix_listener", "inet_listener", "fifo_listener"):
            value = " ".join(sorted(value.split()))
        out.add(f"{key}={value}")
    return out


@pytest.mark.parametrize("name", ["small_office.conf", "namespaces_special_use.conf",
                                  "quota_warnings.conf", "sql_passdb.conf"])
def test_simple_output_matches_doveconf(tree: Path, name: str) -> None:
    cwd = tree / "configs"
    dove = doveconf_with_cote_defaults(cwd, "-c", name, "-S")
    cote = coteconf(cwd, "-c", name, "-S")
    assert cote.rc == dove.rc == 0
    assert _simple_set(cote) == _simple_set(dove)


@pytest.mark.parametrize("args", [
    ("-h", "no_such_setting"), ("-h", "service/imap-login/inet_listener/imaps/port"),
    ("-h", "service/imap-login"), ("-h", "plugin"), ("base_dir", "service/imap/process_limit"),
    ("-h", "namespace/inbox/mailbox/Sent\\_Messages/special_use"),
])
def test_single_values_like_doveconf(tree: Path, args: tuple[str, ...]) -> None:
    cwd = tree / "configs"
    dove = doveconf_with_cote_defaults(cwd, "-c", "namespaces_special_use.conf", *args)
    cote = coteconf(cwd, "-c", "namespaces_special_use.conf", *args)
    assert (cote.rc, cote.out) == (dove.rc, dove.out)


@pytest.mark.parametrize("name", ["legacy_dovecot1.conf", "legacy_dovecot22.conf",
                                  "legacy_ssl_protocols.conf"])
def test_obsolete_settings_warn_like_doveconf(tree: Path, name: str) -> None:
    """Old settings are converted (the -n/-a tests compare the result) with doveconf's words."""
    cwd = tree / "configs"
    dove = doveconf(cwd, "-c", name, "-n")
    cote = coteconf(cwd, "-c", name, "-n")
    expected = {line.split(": ", 2)[2].replace("doveconf -Pn", "coteconf -Pn")
                for line in dove.err.splitlines()
                if ": Warning: " in line or "Could not find a minimum" in line}
    got = {line.split(": ", 2)[2] for line in cote.err.splitlines()
           if "not implemented by cote" not in line}
    assert any("Obsolete setting in" in w for w in expected)
    assert got == expected
