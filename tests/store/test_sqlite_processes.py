"""SqliteJobStore under a SIGKILL, beside another process, and shared by threads."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from mparticle_klaviyo.store.sqlite import SqliteJobStore
from tests.store.helpers import LEASE_S, T0, A, new_job

REPO = Path(__file__).resolve().parents[2]
BATCH = 100


def start_writer(path: Path, batches: int, size: int, prefix: str) -> subprocess.Popen[str]:
    """Start tests/store/writer.py and wait until its store is open."""
    args = [sys.executable, "-m", "tests.store.writer", str(path), str(batches), str(size), prefix]
    child = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "open"
    return child


@pytest.fixture(scope="module")
def killed_writer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """(jobs the writer reported stored before SIGKILL, jobs found on reopening)."""
    path = tmp_path_factory.mktemp("killed") / "jobs.db"
    child = start_writer(path, batches=100_000, size=BATCH, prefix="child")
    assert child.stdout is not None
    lines = [child.stdout.readline() for _ in range(5)]
    child.kill()  # SIGKILL: no cleanup, no flush, no close
    lines += child.stdout.read().split()
    child.wait()
    with closing(SqliteJobStore(path)) as store:
        yield int(lines[-1]), store.backlog()


def test_a_sigkilled_writer_loses_no_job_whose_enqueue_returned(killed_writer: tuple[int, int]) -> None:
    reported, found = killed_writer
    assert found >= reported


def test_a_sigkill_mid_enqueue_leaves_no_partial_batch(killed_writer: tuple[int, int]) -> None:
    reported, found = killed_writer
    assert found % BATCH == 0 and found <= reported + BATCH


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    child = start_writer(path, batches=150, size=10, prefix="child")
    with closing(SqliteJobStore(path)) as store:
        for batch in range(150):
            store.enqueue([new_job(f"parent-{batch}-{i}") for i in range(10)], T0)
        assert child.wait(timeout=30) == 0
        assert store.backlog() == 2 * 150 * 10


def test_threads_sharing_one_store_lose_nothing(tmp_path: Path) -> None:
    with closing(SqliteJobStore(tmp_path / "jobs.db")) as store:

        def work(name: str) -> None:
            for batch in range(40):
                store.enqueue([new_job(f"{name}-{batch}-{i}") for i in range(10)], T0)
                store.release([job.id for job in store.claim(A, 5, LEASE_S, T0)])
                store.counts()

        threads = [threading.Thread(target=work, args=(f"t{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.backlog() == 4 * 40 * 10
