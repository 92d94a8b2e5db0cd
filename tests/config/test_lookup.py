"""Config.lookup(): filter precedence (protocol + local + remote nesting) against doveconf -f."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cote.config import Config, ConfigError, load
from cote.config.values import format_value
from tests.config.conftest import coteconf, doveconf

CONF = Path(__file__).parent / "lookup" / "precedence.conf"
KEYS = {"mail_max_userip_connections": "uint", "imap_idle_notify_interval": "time",
        "login_greeting": "str"}

LOOKUPS = [
    {}, {"protocol": "imap"}, {"protocol": "pop3"}, {"local_ip": "192.0.2.5"},
    {"local_ip": "192.0.2.10"}, {"protocol": "imap", "local_ip": "192.0.2.10"},
    {"protocol": "imap", "local_ip": "192.0.2.5"}, {"remote_ip": "10.9.9.9"},
    {"protocol": "pop3", "remote_ip": "10.9.9.9"}, {"protocol": "imap", "remote_ip": "10.9.9.9"},
    {"local_ip": "192.0.2.10", "remote_ip": "10.1.2.3"},
    {"local_ip": "192.0.2.10", "remote_ip": "10.9.9.9"},
    {"protocol": "imap", "local_ip": "192.0.2.10", "remote_ip": "10.1.2.3"},
    {"protocol": "pop3", "local_ip": "192.0.2.5", "remote_ip": "10.9.9.9"},
    {"protocol": "imap", "remote_ip": "2001:db8::1"},
    {"protocol": "pop3", "remote_ip": "2001:db8::1"},
    {"protocol": "lmtp", "local_ip": "198.51.100.1", "remote_ip": "203.0.113.9"},
    {"local_name": "mail.example.com"}, {"local_name": "other.example.com"},
]
DOVECONF_FILTER = {"protocol": "protocol", "local_ip": "local", "remote_ip": "remote",
                   "local_name": "lname"}


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load(str(CONF))


def _id(criteria: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in criteria.items()) or "none"


@pytest.mark.parametrize("criteria", LOOKUPS, ids=_id)
def test_lookup_matches_doveconf_f(cfg: Config, criteria: dict[str, str]) -> None:
    args = [a for k, v in criteria.items() for a in ("-f", f"{DOVECONF_FILTER[k]}={v}")]
    dove = doveconf(CONF.parent, "-c", str(CONF), *args, "-h", *KEYS)
    if dove.rc != 0:
        conflict = next(line for line in dove.err.splitlines()
                        if ": Error: Conflict in setting" in line)
        with pytest.raises(ConfigError) as info:
            cfg.lookup(**criteria)
        # Same filter (file:line). When one filter conflicts on several settings, doveconf names
        # the first in its internal module order, cote the first alphabetically.
        dove_key, dove_at = conflict.split("Conflict in setting ", 1)[1].split(" found ", 1)
        cote_key, cote_at = str(info.value).split("Conflict in setting ", 1)[1].split(" found ", 1)
        assert cote_at == dove_at
        assert {dove_key, cote_key} <= set(KEYS)
        return
    view = cfg.lookup(**criteria)
    got = [format_value(kind, view.get(key)) for key, kind in KEYS.items()]
    assert got == dove.out.splitlines()


def test_more_specific_wins_and_views_are_cached(cfg: Config) -> None:
    v1 = cfg.lookup(protocol="pop3", local_ip="192.0.2.10")
    assert v1 is cfg.lookup(protocol="pop3", local_ip="192.0.2.10")
    assert v1.get("mail_max_userip_connections") == 4
    pop = cfg.lookup(protocol="pop3", remote_ip="10.200.0.1")
    assert pop.get("mail_max_userip_connections") == 7
    assert pop.get("login_greeting") == "remote-8-pop3"
    assert cfg.get("mail_max_userip_connections") == 1
    assert cfg.lookup(remote_ip="::ffff:10.1.1.1").get("mail_max_userip_connections") == 6
    v6 = cfg.lookup(protocol="pop3", remote_ip="2001:db8::1")
    assert v6.get("login_greeting") == "v6"
    with pytest.raises(ConfigError, match="Conflict in setting imap_idle_notify_interval"):
        cfg.lookup(protocol="imap", remote_ip="2001:db8::1")
    # lookups also take the views' own settings lists (sections are shared)
    assert [s.name for s in v6.sections("service")] == [s.name for s in cfg.sections("service")]


def test_lookup_is_cheap(cfg: Config) -> None:
    """Per-connection lookups must not re-parse: thousands per second even in CI."""
    start = time.perf_counter()
    for i in range(2000):
        cfg.lookup(protocol="pop3", remote_ip=f"10.0.{i % 250}.{i % 200}")
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("filters", [
    ("protocol=imap", "local=192.0.2.5"), ("protocol=imap", "remote=10.9.9.9"),
    ("local=192.0.2.10", "remote=10.1.2.3"), ("protocol=pop3", "remote=10.9.9.9"),
])
def test_coteconf_f_conflicts_like_doveconf(filters: tuple[str, ...]) -> None:
    """coteconf -f ... -h: same value, or the same conflict error and exit status."""
    args = [a for f in filters for a in ("-f", f)]
    dove = doveconf(CONF.parent, "-c", str(CONF), *args, "-h", "mail_max_userip_connections")
    cote = coteconf(CONF.parent, "-c", str(CONF), *args, "-h", "mail_max_userip_connections")
    assert cote.rc == dove.rc
    assert cote.out == dove.out
    if dove.rc:
        errors = [line.split(": ", 1)[1] for line in dove.err.splitlines()
                  if ": Error: Conflict" in line or line.endswith("Errors in configuration")]
        assert [line.split(": ", 1)[1] for line in cote.err.splitlines()
                if "Warning" not in line] == errors[-2:]
