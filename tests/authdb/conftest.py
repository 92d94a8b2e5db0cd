"""Assertion rewriting for the shared case modules (their asserts show both sides)."""

import pytest

pytest.register_assert_rewrite("tests.authdb.sqlcases", "tests.authdb.wire")
