"""cote installs as a normal (non-editable) package: every subpackage and console script ships.

The top-level folders are mapped onto ``cote.*`` with setuptools' package-dir; a folder that
setup.py failed to discover would work in the editable checkout and break in a real install,
so this builds a real one in a fresh venv from a copy of the tree.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.env import remove_dir, server_dir

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"cote": "cote", "cote.master": "master", "cote.login": "login", "cote.auth": "auth",
         "cote.mailproc": "mailproc", "cote.storage": "storage"}


def source_packages() -> set[str]:
    found = set()
    for package, folder in ROOTS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((package, *rel)))
    return found


def purelib(python: str) -> str:
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    return subprocess.run([python, "-c", code], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture(scope="module")
def installed_venv() -> Iterator[Path]:
    work = server_dir("install")
    src = work / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".mypy_cache", ".ruff_cache",
        ".pytest_cache", ".hypothesis", "demo", "results"))
    venv = work / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    # The runtime dependencies come from the project venv (a plain path entry: its editable
    # finder for cote is only activated by its own .pth, which is not processed from here), so
    # the test checks our packaging, not the package index.
    deps, site = purelib(sys.executable), purelib(str(venv / "bin/python"))
    Path(site, "cote-test-deps.pth").write_text(deps + "\n")
    # A plain `pip install .` as an admin would run it (build isolation fetches setuptools).
    subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "--no-deps",
                    "--disable-pip-version-check", str(src)], check=True, cwd=work)
    yield venv
    remove_dir(work)


def test_every_subpackage_is_installed(installed_venv: Path) -> None:
    expected = source_packages()
    assert {"cote", "cote.master", "cote.storage"} <= expected
    code = (
        "import importlib, sys\n"
        f"names = {sorted(expected)!r}\n"
        "for n in names:\n"
        "    m = importlib.import_module(n)\n"
        "    assert '/site-packages/' in m.__file__, (n, m.__file__)\n"
        "print(len(names))\n"
    )
    out = subprocess.run([str(installed_venv / "bin/python"), "-c", code], cwd="/",
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == len(expected)


@pytest.mark.parametrize("script", ["cote", "coteadm", "coteconf"])
def test_console_scripts_are_installed(installed_venv: Path, script: str) -> None:
    path = installed_venv / "bin" / script
    assert path.exists()
    assert "cote.cli." in path.read_text()
