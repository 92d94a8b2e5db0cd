"""Fixtures for the config tests: a private copy of the test configs (with a throwaway TLS
certificate for the ``<file`` settings) and runners for Debian's doveconf and cote's coteconf."""

from __future__ import annotations

import datetime
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cote.config.schema import cote_service_defaults
from tests.support.env import remove_dir, server_dir

HERE = Path(__file__).parent
CONFIGS = HERE / "configs"
BROKEN = HERE / "broken"


@dataclass
class Run:
    rc: int
    out: str
    err: str

    @property
    def body(self) -> list[str]:
        """stdout without the leading ``# version / OS`` header lines."""
        lines = self.out.splitlines()
        while lines and lines[0].startswith("# "):
            lines.pop(0)
        return lines

    @property
    def fatal(self) -> str:
        """The text after ``Fatal: `` of the first fatal line on stderr."""
        for line in self.err.splitlines():
            if ": Fatal: " in line:
                return line.split(": Fatal: ", 1)[1]
        return ""


def _run(cmd: list[str], cwd: Path) -> Run:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def doveconf(cwd: Path, *args: str) -> Run:
    return _run(["doveconf", *args], cwd)


def cote_defaults_preamble() -> str:
    """Dovecot config text that sets cote's own built-in service defaults (the knowing
    differences of docs/differences.md, "Processes")."""
    blocks = [f"service {name} {{\n" + "".join(f"  {k} = {v}\n" for k, v in sorted(keys.items()))
              + "}\n" for name, keys in sorted(cote_service_defaults().items())]
    return "".join(blocks)


def doveconf_with_cote_defaults(cwd: Path, *args: str) -> Run:
    """doveconf reading the ``-c`` config behind cote's defaults, so that what it prints for
    defaults (-a, -h, -S) is what coteconf must print; settings the config makes win, as they
    come later. (``-n`` needs no preamble: it prints what the file sets, defaults or not.)"""
    argv = list(args)
    at = argv.index("-c") + 1
    config = (cwd / argv[at]).resolve()
    wrapper = cwd / f".cote-defaults.{config.name}"
    wrapper.write_text(cote_defaults_preamble() + f"!include {config}\n")
    argv[at] = str(wrapper)
    return doveconf(cwd, *argv)


def coteconf(cwd: Path, *args: str) -> Run:
    return _run([sys.executable, "-m", "cote.cli.conf", *args], cwd)


def _write_cert(ssl_dir: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    ssl_dir.mkdir(exist_ok=True)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (ssl_dir / "server.pem").write_bytes(pem)
    (ssl_dir / "ca.pem").write_bytes(pem)
    (ssl_dir / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))


@pytest.fixture(scope="module")
def tree() -> Iterator[Path]:
    """A copy of tests/config/configs and tests/config/broken with generated TLS files."""
    root = server_dir("config")
    shutil.copytree(CONFIGS, root / "configs")
    shutil.copytree(BROKEN, root / "broken")
    _write_cert(root / "configs" / "ssl")
    _write_cert(root / "broken" / "ssl")
    yield root
    remove_dir(root)


def config_names() -> list[str]:
    return sorted(p.name for p in CONFIGS.glob("*.conf"))


def broken_names() -> list[str]:
    return sorted(p.name for p in BROKEN.glob("*.conf"))
