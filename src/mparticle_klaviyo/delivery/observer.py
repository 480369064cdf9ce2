"""An optional listener for jobs leaving the queue for good: ``replay`` counts and shows progress with it.

The dispatcher calls it after the store has recorded the outcome (acked or buried), from the
event loop; it must be quick and must not raise. ``serve`` runs without one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from mparticle_klaviyo.klaviyo.request import KlaviyoRequest
from mparticle_klaviyo.store.base import Job


class SettleObserver(Protocol):
    """Hears every job that was delivered or dead-lettered."""

    def acked(self, jobs: Sequence[Job], requests: Sequence[KlaviyoRequest]) -> None:
        """Klaviyo accepted ``requests``, which carried ``jobs``."""
        ...

    def buried(self, jobs: Sequence[Job], reason: str) -> None:
        """``jobs`` went to the dead letters for ``reason``."""
        ...
