"""Shared test fixtures: the ../shared fixture tree, with a skip that fails under CI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
MPARTICLE_FIXTURES = SHARED / "fixtures" / "mparticle"
OPENAPI_SPEC = SHARED / "klaviyo-openapi" / "stable.json"


def require_shared(path: Path) -> Path:
    """Return ``path`` if it exists; skip the test, or fail it when ``CI=true``."""
    if path.exists():
        return path
    reason = f"{path} is absent (tests read ../shared beside the checkout)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.fixture
def mparticle_fixtures() -> Path:
    """The directory of real mParticle messages in ../shared."""
    return require_shared(MPARTICLE_FIXTURES)


@pytest.fixture
def openapi_spec_path() -> Path:
    """Klaviyo's official OpenAPI spec in ../shared."""
    return require_shared(OPENAPI_SPEC)
