"""``OwnerLock``: one ``serve`` per store file, released by the kernel when its holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mparticle_klaviyo.store.errors import StoreError
from mparticle_klaviyo.store.owner import OwnerLock, StoreInUseError

HOLD = """
import sys, time
from mparticle_klaviyo.store.owner import OwnerLock
OwnerLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_lock_on_the_same_store_is_refused_naming_the_holders_pid(tmp_path: Path) -> None:
    store = tmp_path / "jobs.sqlite3"
    with OwnerLock(store) as first:
        assert first.held
        with pytest.raises(StoreInUseError) as refused:
            OwnerLock(store).acquire()
    message = str(refused.value)
    assert f"pid {os.getpid()}" in message
    assert str(store) in message
    assert isinstance(refused.value, StoreError)


def test_the_lock_can_be_taken_again_once_released(tmp_path: Path) -> None:
    store = tmp_path / "jobs.sqlite3"
    first = OwnerLock(store).acquire()
    first.release()
    first.release()  # twice is harmless
    assert not first.held
    with OwnerLock(store) as second:
        assert second.held


def test_another_stores_lock_is_independent(tmp_path: Path) -> None:
    with OwnerLock(tmp_path / "a.sqlite3"), OwnerLock(tmp_path / "b.sqlite3") as other:
        assert other.held


def test_the_lock_file_is_private_and_sits_beside_the_store(tmp_path: Path) -> None:
    lock = OwnerLock(tmp_path / "jobs.sqlite3")
    with lock:
        assert lock.path == tmp_path / "jobs.sqlite3.lock"
        assert lock.path.stat().st_mode & 0o777 == 0o600


def test_a_lock_held_by_a_process_killed_with_sigkill_is_free_again(tmp_path: Path) -> None:
    store = tmp_path / "jobs.sqlite3"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(store)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreInUseError, match=f"pid {holder.pid}"):
            OwnerLock(store).acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        deadline = time.monotonic() + 5
        while True:
            try:
                with OwnerLock(store) as taken:
                    assert taken.held
                break
            except StoreInUseError:
                assert time.monotonic() < deadline, "the dead holder's lock was never released"
                time.sleep(0.05)
    finally:
        holder.kill()
        holder.wait(10)
