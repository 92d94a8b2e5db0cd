"""``python -m bench auth --backend …`` end to end in --smoke mode: the backend server starts,
both daemons answer every login from it (no errors, a positive figure per row) and the rows
name the backend and its pool. Not timed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.test_smoke import number, run_bench, table_rows
from tests.support.dovecot import dovecot_available
from tests.support.postgres import postgres_available
from tests.support.slapd import slapd_available

AVAILABLE = {"sqlite": True, "pgsql": postgres_available(), "ldap": slapd_available()}


@pytest.mark.parametrize("backend", list(AVAILABLE))
def test_bench_auth_backend_smoke(backend: str, tmp_path: Path) -> None:
    if not dovecot_available() or not AVAILABLE[backend]:
        pytest.skip(f"needs Dovecot and the {backend} server")
    code, out, err = run_bench("auth", "--smoke", "--backend", backend, results=tmp_path)
    assert code == 0, f"exit {code}\n{out}\n{err[-3000:]}"
    assert "RESULT: OK (cote ok, dovecot ok)" in out, out
    rows = table_rows(out)
    assert {row[2] for row in rows} == {"cote", "dovecot"}, out
    for row in rows:
        assert f", {backend} (" in row[0], row
        assert number(row[3]) > 0 and row[8] == "0", row
