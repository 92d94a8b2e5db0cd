"""Quota settings parsing: units, relative and ignore rules, userdb overrides, bad values."""

from __future__ import annotations

import pytest

from cote.storage.quota import Quota, QuotaConfigError, parse_roots
from cote.storage.quota.rules import merge_settings, parse_rule, parse_size, parse_warning


def test_sizes_and_units() -> None:
    assert parse_size("1G") == (1 << 30, None)
    assert parse_size("100M") == (100 << 20, None)
    assert parse_size("10k") == (10240, None)
    assert parse_size("5") == (5, None)
    assert parse_size("5", default_unit=1024) == (5120, None)
    assert parse_size("95%%") == (0, 95)
    with pytest.raises(QuotaConfigError):
        parse_size("12Q")
    with pytest.raises(QuotaConfigError):
        parse_size("lots")


def test_storage_is_kilobytes_bytes_is_bytes() -> None:
    roots = parse_roots({"quota": "maildir:User quota",
                         "quota_rule": "*:storage=100:messages=10"})
    assert roots[0].default_limits() == (102400, 10)
    roots = parse_roots({"quota": "maildir", "quota_rule": "*:bytes=100"})
    assert roots[0].default_limits() == (100, 0)
    assert roots[0].name == ""


def test_mailbox_rules() -> None:
    [root] = parse_roots({"quota": "count:Q", "quota_vsizes": "yes",
                          "quota_rule": "*:storage=1G",
                          "quota_rule2": "Trash:storage=+100M", "quota_rule3": "Spam*:ignore",
                          "quota_rule4": "Small:storage=1M", "quota_rule5": "Less:bytes=-1k"})
    assert root.limits_for("INBOX") == (1 << 30, 0)
    assert root.limits_for("Trash") == ((1 << 30) + (100 << 20), 0)
    assert root.limits_for("Small") == (1 << 20, 0)
    assert root.limits_for("Less") == ((1 << 30) - 1024, 0)
    assert root.is_ignored("Spam") and root.is_ignored("Spam/old")
    assert not root.is_ignored("INBOX")


def test_numbered_settings_stop_at_a_gap() -> None:
    [root] = parse_roots({"quota": "maildir:Q", "quota_rule": "*:storage=1k",
                          "quota_rule2": "Trash:ignore", "quota_rule4": "Junk:ignore"})
    assert [r.mailbox for r in root.rules] == ["*", "Trash"]


def test_second_root_reads_its_own_rules() -> None:
    roots = parse_roots({"quota": "maildir:User", "quota_rule": "*:storage=1k",
                         "quota2": "count:Domain:noenforcing", "quota2_rule": "*:messages=7",
                         "quota_vsizes": "yes"})
    assert [(r.name, r.default_limits(), r.enforcing) for r in roots] == [
        ("User", (1024, 0), True), ("Domain", (0, 7), False)]


def test_userdb_overrides_plugin_rule() -> None:
    merged = merge_settings({"quota": "maildir:Q", "quota_rule": "*:storage=1k"},
                            {"quota_rule": "*:storage=2k", "home": "/x",
                             "plugin/quota_rule2": "Trash:ignore"})
    assert merged["quota_rule"] == "*:storage=2k"
    assert merged["quota_rule2"] == "Trash:ignore"
    assert "home" not in merged
    q = Quota.from_settings({"quota": "maildir:Q", "quota_rule": "*:storage=1k"},
                            {"quota_rule": "*:storage=3M"})
    assert q is not None and q.root_settings[0].default_limits() == (3 << 20, 0)


def test_quota_off() -> None:
    assert Quota.from_settings({"quota_rule": "*:storage=1k"}) is None
    assert Quota.from_settings({"quota": "maildir:Q"}, mail_plugins="acl zlib") is None
    assert Quota.from_settings({"quota": "maildir:Q"}, mail_plugins="zlib quota") is not None


def test_grace_and_warnings() -> None:
    [root] = parse_roots({"quota": "maildir:Q", "quota_rule": "*:storage=1000",
                          "quota_grace": "10%%",
                          "quota_warning": "storage=95%% quota-warning 95 %u",
                          "quota_warning2": "-storage=100%% quota-warning below %u",
                          "quota_warning3": "messages=50 /run/other 50"})
    assert root.grace_bytes() == 102400
    w1, w2, w3 = root.warnings
    assert w1.command == ("quota-warning", "95", "%u") and not w1.reverse
    assert root.warning_limits(w1) == (1024000 * 95 // 100, 0)
    assert w2.reverse and root.warning_limits(w2) == (1024000, 0)
    assert root.warning_limits(w3) == (0, 50)
    [default_grace] = parse_roots({"quota": "maildir:Q", "quota_rule": "*:bytes=1000"})
    assert default_grace.grace_bytes() == 100


@pytest.mark.parametrize("bad", [
    {"quota": "nosuch:Q"},
    {"quota": "count:Q"},
    {"quota": "maildir:Q", "quota_rule": "*:storage=+1k"},
    {"quota": "maildir:Q", "quota_rule": "*:size=1k"},
    {"quota": "maildir:Q", "quota_rule": "Trash"},
    {"quota": "maildir:Q", "quota_warning": "storage=1k"},
    {"quota": "maildir:Q", "quota_grace": "much"},
])
def test_bad_settings_are_config_errors(bad: dict[str, str]) -> None:
    with pytest.raises(QuotaConfigError) as e:
        parse_roots(bad)
    assert e.value.message.startswith("quota: ")


def test_rule_and_warning_shapes() -> None:
    assert parse_rule("INBOX:messages=+5").limits.count_sign == 1
    assert parse_rule("*:ignore").ignore
    with pytest.raises(QuotaConfigError):
        parse_warning("-storage=+5 cmd")
