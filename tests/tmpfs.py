"""A small tmpfs for tests that need a disk that really fills up (root and mount(8) required)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import skip_or_fail


@contextmanager
def tmpfs(mountpoint: Path, size_mib: int) -> Iterator[Path]:
    """A tmpfs of ``size_mib`` MiB at ``mountpoint`` for the block; skipped (failed under CI) where impossible."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        skip_or_fail("a full disk needs a small tmpfs: run as root on Linux with mount(8)")
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        skip_or_fail(f"a full disk needs a small tmpfs, and mount failed: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], check=False)
