"""One ``serve`` per SQLite store: an exclusive lock on ``<store>.lock`` for the process's life.

The embedded store has no shared lease table: the process that runs delivery owns every
connection in it (rate limiters, the per-profile barrier and leases live in its memory). A
second ``serve`` on the same file would double the request rate Klaviyo sees and send jobs the
first one holds back. ``flock`` is released by the kernel when the process dies, even by
``kill -9``, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from mparticle_klaviyo.store.errors import StoreError


class StoreInUseError(StoreError):
    """Another process holds the store's owner lock."""

    def __init__(self, store: Path, holder: str) -> None:
        who = f"pid {holder}" if holder else "another process"
        super().__init__(
            f"the job store {store} is in use by another `serve` ({who}); "
            "run one `serve` per store file, or give each a store of its own"
        )


class OwnerLock:
    """Held while this process delivers from ``store``; ``acquire`` raises ``StoreInUseError``."""

    def __init__(self, store: str | Path) -> None:
        self.store = Path(store)
        self.path = self.store.with_name(self.store.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> OwnerLock:
        """Take the lock without waiting; write our pid into the lock file for the error above."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise StoreInUseError(self.store, holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def release(self) -> None:
        """Give the lock up (releasing twice is harmless); the emptied file stays."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)

    def __enter__(self) -> OwnerLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
