"""Any text as a config file gives a Config or a ConfigError, never another exception."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cote.config import ConfigError, parse

PIECES = ["service", "imap-login", "inet_listener", "imap", "{", "}", "=", "port", "143",
          "protocol", "local", "remote", "10.0.0.0/8", "1.2.3.4", "namespace", "mailbox",
          "plugin", "passdb", "driver", "pam", "!include", "!include_try", "*.conf", "<",
          "$mail_plugins", "mail_plugins", "ssl", "yes", "required", "1G", "1 hour", "#", '"',
          "'", "\\", "mode", "0600", "special_use", "\\Sent", "local_name", "x", " ", "\t"]

line = st.lists(st.sampled_from(PIECES), max_size=6).map(" ".join)
text = st.lists(line, max_size=25).map("\n".join)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text)
def test_random_configs_never_crash(tmp_path: Path, body: str) -> None:
    conf = tmp_path / "fuzz.conf"
    conf.write_text(body)
    for strict in (False, True):
        try:
            cfg, _ = parse(str(conf), strict=strict)
        except ConfigError as e:
            assert str(e)
            continue
        try:
            cfg.lookup(protocol="imap", local_ip="1.2.3.4", remote_ip="10.1.1.1")
        except ConfigError as e:
            assert "Conflict in setting" in str(e)
        for sec in cfg.sections("service"):
            for key in sec.setting_names():
                sec.get(key)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes(body: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=True) as fh:
        fh.write(body)
        fh.flush()
        try:
            parse(fh.name, strict=False)
        except ConfigError:
            pass
