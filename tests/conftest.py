"""Shared test fixtures: the ../shared fixture tree, a fresh PostgreSQL schema, and a skip that fails under CI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
MPARTICLE_FIXTURES = SHARED / "fixtures" / "mparticle"
OPENAPI_SPEC = SHARED / "klaviyo-openapi" / "stable.json"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip a test that cannot run here, saying why; under ``CI=true`` fail it instead.

    CI's machine has what every check needs (``.ci/run`` installs it), so a skip there would
    hide a check that silently stopped running.
    """
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def require_shared(path: Path) -> Path:
    """Return ``path`` if it exists; skip the test, or fail it when ``CI=true``."""
    if path.exists():
        return path
    skip_or_fail(f"{path} is absent (tests read ../shared beside the checkout)")


@pytest.fixture
def mparticle_fixtures() -> Path:
    """The directory of real mParticle messages in ../shared."""
    return require_shared(MPARTICLE_FIXTURES)


@pytest.fixture
def openapi_spec_path() -> Path:
    """Klaviyo's official OpenAPI spec in ../shared."""
    return require_shared(OPENAPI_SPEC)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL of the machine's PostgreSQL whose tables land in a fresh schema, dropped after the test."""
    from tests.store.pg import fresh_schema

    with fresh_schema() as url:
        yield url
