"""Errors a job store raises on purpose (backend-neutral, so every store raises the same ones)."""

from __future__ import annotations

from mparticle_klaviyo.errors import MparticleKlaviyoError


class StoreError(MparticleKlaviyoError):
    """A job store that cannot be opened or used as asked."""


class StoreClosedError(StoreError):
    """A call on a store after ``close()``."""

    def __init__(self) -> None:
        super().__init__("the job store is closed; open a new one")


class SchemaVersionError(StoreError):
    """A database whose schema is newer than this code knows (written by a later release)."""

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"job store schema version {found} is newer than this release supports ({supported}); upgrade the program"
        )
        self.found = found
        self.supported = supported


class StoreUnreachableError(StoreError):
    """The store's database server cannot be reached, or dropped the connection (the call did not happen)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the job store database is unreachable: {reason}")
        self.reason = reason


class LeaseLostError(StoreError):
    """A claim or settle under a lease epoch that is no longer current: another node owns the account now."""

    def __init__(self, epoch: int) -> None:
        super().__init__(f"the delivery lease of epoch {epoch} is no longer held; the write was refused")
        self.epoch = epoch
