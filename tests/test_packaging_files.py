"""The shipped systemd units are valid for this machine's systemd."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.env import remove_dir, server_dir

REPO = Path(__file__).resolve().parents[1]
UNITS = sorted((REPO / "packaging/systemd").glob("cote.*"))


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_unit_verifies(unit: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze missing (Debian package systemd)")
    work = server_dir("units")
    try:
        # The unit names /usr/bin/cote; point it at this checkout's installed script instead.
        text = unit.read_text().replace("/usr/bin/cote", str(REPO / ".venv/bin/cote"))
        copy = work / unit.name
        copy.write_text(text)
        if unit.suffix == ".socket":
            (work / "cote.service").write_text(
                (REPO / "packaging/systemd/cote.service").read_text()
                .replace("/usr/bin/cote", str(REPO / ".venv/bin/cote")))
        out = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True)
        problems = [line for line in out.stderr.splitlines() if unit.name in line]
        assert out.returncode == 0 and not problems, out.stderr
    finally:
        remove_dir(work)
