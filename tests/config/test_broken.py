"""Broken configs: coteconf fails exactly where doveconf does, with its exit status and text."""

from __future__ import annotations

from pathlib import Path

import pytest

from cote.config import ConfigError, load
from tests.config.conftest import broken_names, coteconf, doveconf

EX_CONFIG_FATAL = 89


def _args(name: str) -> list[str]:
    # *_x.conf are only errors when $variables and <files are expanded (doveconf -x).
    return ["-c", name, "-n", *(["-x"] if name.endswith("_x.conf") else [])]


@pytest.mark.parametrize("name", broken_names())
def test_rejected_like_doveconf(tree: Path, name: str) -> None:
    cwd = tree / "broken"
    dove = doveconf(cwd, *_args(name))
    cote = coteconf(cwd, *_args(name))
    assert dove.rc == EX_CONFIG_FATAL, dove.err
    assert cote.rc == dove.rc
    assert dove.fatal.startswith("Error in configuration file ")
    assert cote.fatal == dove.fatal
    assert cote.body == dove.body      # whole-config problems come after the full dump
    assert "Traceback" not in cote.err


@pytest.mark.parametrize("name", broken_names())
def test_load_raises_config_error(tree: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = tree / "broken"
    monkeypatch.chdir(cwd)
    dove = doveconf(cwd, *_args(name))
    with pytest.raises(ConfigError) as info:
        load(name)
    err = info.value
    assert str(err) == dove.fatal
    assert err.message and str(err).endswith(err.message)
    if " line " in dove.fatal.split(":", 1)[0]:
        assert err.file is not None and err.line is not None
        assert f"{err.file} line {err.line}:" in dove.fatal


def test_broken_set_is_large_enough() -> None:
    assert len(broken_names()) >= 15


def test_missing_config_file(tree: Path) -> None:
    dove = doveconf(tree, "-c", "no-such-dir/dovecot.conf", "-n")
    cote = coteconf(tree, "-c", "no-such-dir/dovecot.conf", "-n")
    assert cote.rc == dove.rc == EX_CONFIG_FATAL
    assert cote.fatal == dove.fatal == (
        "open(no-such-dir/dovecot.conf) failed: No such file or directory")
