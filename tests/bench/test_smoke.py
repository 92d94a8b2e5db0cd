"""Every bench scenario runs end to end in --smoke mode and reports clean figures.

These are not timed tests: they check that the harness, the load generator and the clients
work against the real servers (no errors, a positive figure per row, a JSON line written).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scenarios import SCENARIOS
from tests.support.dovecot import dovecot_available

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.oracle


def run_bench(*args: str, results: Path) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "bench", *args, "--results-dir", str(results)],
                          cwd=REPO, capture_output=True, text=True, timeout=240)
    return proc.returncode, proc.stdout, proc.stderr


def table_rows(stdout: str) -> list[list[str]]:
    """Figure rows of the first table: variant, metric, server, median, min, max, p50, p99, errors."""
    rows = []
    for line in stdout.splitlines():
        if not line.startswith("| "):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == "variant" and cells[2] == "cote/dovecot":
            break
        if cells[0] != "variant":
            rows.append(cells)
    return rows


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


@pytest.fixture(scope="module", autouse=True)
def _need_dovecot() -> None:
    if not dovecot_available():
        pytest.fail("Debian's dovecot-core is not installed: run scripts/test (it installs it)")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_smoke_against_dovecot_reports_clean_figures(scenario: str, tmp_path: Path) -> None:
    code, out, err = run_bench(scenario, "--smoke", "--only", "dovecot", results=tmp_path)
    assert code == 0, f"exit {code}\n{out}\n{err[-3000:]}"
    assert "RESULT: OK (dovecot ok)" in out
    rows = table_rows(out)
    assert rows, out
    for row in rows:
        assert row[2] == "dovecot", row
        assert len(row) == 9, row
        if scenario == "idle-memory":
            # PSS after minus before, over 20 hibernated connections: what the hibernation
            # frees (the imap processes of the logins) can outweigh what the connections cost,
            # so only a sane size is asserted there.
            low, high = (-1.0, 20.0) if row[1] == "MB/conn" else (-20.0, 400.0)
            assert low < number(row[3]) < high, row
        else:
            assert number(row[3]) > 0, row
        assert number(row[4]) <= number(row[3]) <= number(row[5]), row
        assert row[8] == "0", row
    record = json.loads((tmp_path / f"{scenario}.jsonl").read_text().splitlines()[-1])
    assert record["scenario"] == scenario
    assert record["result"] == "OK"
    assert {r["server"] for r in record["rows"]} == {"dovecot"}
    assert all(r["errors"] == {} for r in record["rows"])
    if scenario != "idle-memory":
        assert all(r["min"] > 0 for r in record["rows"])


def test_cote_is_measured_or_reported_not_available(tmp_path: Path) -> None:
    code, out, err = run_bench("startup", "--smoke", results=tmp_path)
    assert code == 0, f"exit {code}\n{out}\n{err[-3000:]}"
    record = json.loads((tmp_path / "startup.jsonl").read_text().splitlines()[-1])
    measured = {r["server"] for r in record["rows"]}
    assert "dovecot" in measured
    if "cote" in record["unavailable"]:
        reason = record["unavailable"]["cote"]
        assert reason
        assert f"cote: not available ({reason[:40]}" in out
        assert "cote" not in measured
    else:
        assert "cote" in measured
        assert "RESULT: OK (cote ok, dovecot ok)" in out
