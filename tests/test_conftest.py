"""The test suite's own guard: a check that cannot run is skipped locally and fails in CI."""

from __future__ import annotations

import pytest

from tests.conftest import skip_or_fail


def test_outside_ci_a_check_that_cannot_run_is_skipped_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no tool"):
        skip_or_fail("no tool")


def test_under_ci_a_check_that_cannot_run_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and no tool"):
        skip_or_fail("no tool")
