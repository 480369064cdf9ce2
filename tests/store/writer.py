"""A child process for the store's crash and concurrency tests.

Usage: ``python -m tests.store.writer PATH BATCHES BATCH_SIZE PREFIX``. Prints ``open`` once the
store is open, then the running total of stored jobs after each enqueue returns.
"""

from __future__ import annotations

import sys

from mparticle_klaviyo.store.sqlite import SqliteJobStore
from tests.store.helpers import T0, new_job


def main(argv: list[str]) -> None:
    """Enqueue BATCHES batches of BATCH_SIZE fresh keys, reporting each commit on stdout."""
    path, batches, size, prefix = argv[0], int(argv[1]), int(argv[2]), argv[3]
    store = SqliteJobStore(path)
    print("open", flush=True)
    for batch in range(batches):
        store.enqueue([new_job(f"{prefix}-{batch}-{i}") for i in range(size)], T0 + batch)
        print((batch + 1) * size, flush=True)
    store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
