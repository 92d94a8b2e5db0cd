"""Pigeonhole's file layout for scripts, on a temporary home (the differential tests show
Dovecot reading it; these pin the details: modes, links, renames, odd files)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cote.mailproc.managesieve.storage import (
    Quota,
    ScriptError,
    ScriptStorage,
    parse_location,
    sanitized,
    valid_name,
)


@pytest.fixture
def store(tmp_path: Path) -> ScriptStorage:
    home = tmp_path / "home"
    return ScriptStorage(*parse_location("file:~/sieve;active=~/.dovecot.sieve", str(home)))


def test_parse_location() -> None:
    assert parse_location("file:~/sieve;active=~/.dovecot.sieve", "/h") == \
        ("/h/sieve", "/h/.dovecot.sieve")
    assert parse_location("/srv/s/u", "/h") == ("/srv/s/u", "/srv/s/.dovecot.sieve")
    assert parse_location("", "/h") == ("/h/sieve", "/h/.dovecot.sieve")


def test_put_creates_private_dirs_and_files(store: ScriptStorage) -> None:
    old = os.umask(0o022)
    try:
        store.put("a", b"keep;")
    finally:
        os.umask(old)
    home = Path(store.dir).parent
    for d in (home, Path(store.dir), Path(store.dir) / "tmp"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    assert stat.S_IMODE(Path(store.path("a")).stat().st_mode) == 0o600
    assert os.listdir(Path(store.dir) / "tmp") == []  # the temporary file was renamed


def test_activate_rename_delete(store: ScriptStorage) -> None:
    store.put("a", b"keep;")
    store.put("b", b"discard;")
    assert store.activate("a") and not store.activate("a")
    assert os.readlink(store.active_path) == "sieve/a.sieve"
    store.rename("a", "c")
    assert store.active() == "c" and os.readlink(store.active_path) == "sieve/c.sieve"
    assert store.names() == ["b", "c"]
    with pytest.raises(ScriptError) as e:
        store.delete("c")
    assert e.value.code == "ACTIVE"
    with pytest.raises(ScriptError) as e:
        store.rename("b", "c")
    assert e.value.code == "ALREADYEXISTS"
    assert store.deactivate() and not store.deactivate()
    store.delete("c")
    assert store.names() == ["b"]


def test_regular_active_file_is_kept_as_a_script(store: ScriptStorage) -> None:
    store.put("a", b"keep;")
    Path(store.active_path).write_bytes(b"discard;")
    assert store.active() is None
    store.activate("a")
    assert store.get("dovecot.orig") == b"discard;"
    assert store.active() == "a"


def test_listing_ignores_other_files(store: ScriptStorage) -> None:
    store.put("a", b"keep;")
    Path(store.dir, "notes.txt").write_text("x")
    Path(store.dir, ".sieve").write_text("x")
    os.mkdir(Path(store.dir, "d.sieve"))
    assert store.names() == ["a"]


def test_quota_rules(tmp_path: Path) -> None:
    store = ScriptStorage(str(tmp_path / "s"), str(tmp_path / "a"),
                          Quota(max_scripts=2, max_storage=10, max_script_size=20))
    store.check_quota("x", 15)  # nothing stored: storage is not compared (Pigeonhole's way)
    with pytest.raises(ScriptError, match=r"too large \(max 20 bytes\)"):
        store.check_size(21)
    store.put("a", b"keep;")
    with pytest.raises(ScriptError) as e:
        store.check_quota("b", 6)
    assert e.value.code == "QUOTA/MAXSTORAGE"
    store.check_quota("a", 8)  # replacing a script does not count it twice
    store.put("b", b"stop;")
    with pytest.raises(ScriptError) as e:
        store.check_quota("c", 1)
    assert e.value.code == "QUOTA/MAXSCRIPTS"


def test_names() -> None:
    assert valid_name("é") and valid_name("a b")
    assert not valid_name("") and not valid_name("a/b") and not valid_name("a\tb")
    assert not valid_name("x" * 257) and not valid_name("a\udcff")
    assert sanitized("a\tb") == "a?b" and sanitized("n" * 100) == "n" * 77 + "..."
