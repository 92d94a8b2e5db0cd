"""The README's promises that a machine can check: its two set-up commands exist and do what
it says, and the demo ports it lists are the generator's."""

from __future__ import annotations

import os
import re
import subprocess

from cote.demo import DEFAULT_PORTS
from tests.etc.conftest import REPO

README = (REPO / "README.md").read_text()


def test_readme_gives_exactly_two_setup_commands_that_exist() -> None:
    block = re.search(r"## Set-up.*?```sh\n(.*?)```", README, re.S)
    assert block is not None
    commands = [line.split("#")[0].split() for line in block.group(1).splitlines()
                if line.strip()]
    assert commands == [["sudo", "scripts/demo"], ["sudo", "scripts/test"]]
    for _, script in commands:
        path = REPO / script
        assert path.is_file() and os.access(path, os.X_OK), script
        assert subprocess.run(["bash", "-n", str(path)], check=False).returncode == 0


def test_demo_script_runs_the_generator_and_the_master() -> None:
    script = (REPO / "scripts" / "demo").read_text()
    assert "scripts/bootstrap" in script
    assert "-m cote.demo ./demo" in script
    assert "cote -F -c demo/dovecot.conf" in script


def test_readme_lists_the_demo_ports_the_generator_uses() -> None:
    labels = {"imap": "IMAP", "imaps": "IMAPS", "pop3": "POP3", "pop3s": "POP3S",
              "lmtp": "LMTP", "sieve": "ManageSieve"}
    for name, port in DEFAULT_PORTS.items():
        assert re.search(rf"\b{labels[name]} {port}\b", README), name


def test_readme_layout_names_folders_that_exist() -> None:
    rows = re.findall(r"^\| `([a-z]+)/` \|", README, re.M)
    assert len(rows) >= 10
    for folder in rows:
        assert (REPO / folder).is_dir(), folder
