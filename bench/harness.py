"""Shared helpers of the service benchmarks: child processes, configs, workload bodies, readings.

Every child (``serve``, the emulator, the null server) is started with a parent-death signal and
registered on an ``ExitStack``, so it is stopped (SIGTERM, then SIGKILL) when the benchmark ends,
fails or is interrupted. Files live in a temporary directory removed at the end.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import batch

BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable
EVENTS_KEY = "bench-key"
EVENTS_SECRET = "bench-secret"
AUTH = "Basic " + base64.b64encode(f"{EVENTS_KEY}:{EVENTS_SECRET}".encode()).decode()
PUBLIC_KEY = "DEMO01"  # the emulator's demo account
PRIVATE_KEY = "pk_demo_private_key"
EVENTS_PER_BATCH = 10
Limits = dict[str, tuple[int, int]]


def stop_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so that ``finally`` blocks stop the children."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG: no orphan survives a kill -9 of the benchmark


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Child:
    """A child process whose output goes to a log file; ``stop`` is safe to call at any time."""

    def __init__(self, args: Sequence[str], log: Path, url: str, cwd: Path | None = None) -> None:
        self.url = url
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [PYTHON, *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=cwd,
                preexec_fn=_die_with_parent,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def stop(self, timeout_s: float = 25.0) -> int:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    async def wait_ready(self, path: str, timeout_s: float = 30.0) -> None:
        """Poll ``GET url+path`` until it answers 200; fail if the child dies or time runs out."""
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.log.name}: exited with {self.process.returncode}: {self.tail()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(self.url + path) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.log.name}: not ready after {timeout_s}s: {self.tail()}")

    def tail(self, chars: int = 1500) -> str:
        """The end of the log."""
        return self.log.read_text(errors="replace")[-chars:]


def start_child(
    stack: contextlib.ExitStack, args: Sequence[str], log: Path, port: int, cwd: Path | None = None
) -> Child:
    """Start a child (in ``cwd``, default ours) and register its ``stop`` on ``stack``."""
    child = Child(args, log, f"http://127.0.0.1:{port}", cwd)
    stack.callback(child.stop)
    return child


async def start_emulator(stack: contextlib.ExitStack, workdir: Path, limits: Limits, keep_events: bool) -> Child:
    """The emulator (``bench/servers.py emulator``) with ``limits`` over Klaviyo's defaults."""
    port = free_port()
    args = [str(BENCH / "servers.py"), "emulator", str(port)]
    args += [arg for endpoint, (s, m) in limits.items() for arg in ("--limit", f"{endpoint}={s}/{m}")]
    if keep_events:
        args.append("--keep-events")
    child = start_child(stack, args, workdir / "emulator.log", port)
    await child.wait_ready("/_bench/counters")
    return child


async def start_serve(stack: contextlib.ExitStack, config: Path, port: int) -> Child:
    """``python -m mparticle_klaviyo serve --config CONFIG`` in the config's directory, ready."""
    config = config.resolve()
    args = ["-m", "mparticle_klaviyo", "serve", "--config", str(config)]
    # serve keeps files about a PostgreSQL store (``<name>.resume/``) in its working directory:
    # there they stay in the benchmark's temporary directory.
    child = start_child(stack, args, config.with_suffix(".log"), port, cwd=config.parent)
    await child.wait_ready("/readyz")
    return child


class Account(msgspec.Struct, frozen=True):
    """One connection of a benchmark config: its name, Klaviyo public key and Events API credentials."""

    name: str
    public_key: str
    events_key: str
    events_secret: str

    @property
    def auth(self) -> str:
        """The ``Authorization`` header mParticle sends to this connection."""
        return "Basic " + base64.b64encode(f"{self.events_key}:{self.events_secret}".encode()).decode()


BENCH_ACCOUNT = Account("bench", PUBLIC_KEY, EVENTS_KEY, EVENTS_SECRET)


def write_config(
    workdir: Path,
    klaviyo_url: str,
    *,
    server_mode: bool,
    rate_limits: Limits | None = None,
    name: str = "serve",
    accounts: Sequence[Account] = (BENCH_ACCOUNT,),
    **service: Any,
) -> tuple[Path, int]:
    """A config ``NAME.toml``: a ``[service]`` table and a connection per account (default ``bench``); (path, port)."""
    port = free_port()
    service_table = {"host": "127.0.0.1", "port": port, "store": str(workdir / "jobs.sqlite3"), "log_level": "warning"}
    lines = ["[service]"] + [f"{k} = {_toml(v)}" for k, v in {**service_table, **service}.items()]
    for account in accounts:
        table = _connection(account, klaviyo_url, server_mode, rate_limits)
        lines += ["", f"[connections.{account.name}]"] + [f"{k} = {_toml(v)}" for k, v in table.items()]
    path = workdir / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path, port


def _connection(account: Account, klaviyo_url: str, server_mode: bool, rate_limits: Limits | None) -> dict[str, Any]:
    table: dict[str, Any] = {
        "public_api_key": account.public_key,
        "list_id": "LIST01",
        "default_phone_region": "US",
        "klaviyo_url": klaviyo_url,
        "events_api_key": account.events_key,
        "events_api_secret": account.events_secret,
        "consent_mapping": {"email_marketing": "email"},
    }
    if server_mode:
        table["private_api_key"] = PRIVATE_KEY
    if rate_limits:
        table["rate_limits"] = {endpoint: list(limits) for endpoint, limits in rate_limits.items()}
    return table


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


# ----------------------------------------------------------------------------- workload

_encoder = msgspec.json.Encoder()


def bulk_bodies(requests: int, batches_per_request: int = 10, first_user: int = 0) -> list[bytes]:
    """``/v2/bulkevents`` bodies of distinct users (``bench/workload.py`` batches of 10 events)."""
    user = first_user
    bodies: list[bytes] = []
    for _ in range(requests):
        bodies.append(_encoder.encode([batch(u) for u in range(user, user + batches_per_request)]))
        user += batches_per_request
    return bodies


def write_batches(path: Path, users: range) -> None:
    """One workload batch per line (JSON lines), for ``replay --enqueue``."""
    with path.open("wb") as out:
        for user in users:
            out.write(_encoder.encode(batch(user)) + b"\n")


def enqueue_file(config: Path, path: Path, timeout_s: float = 1800.0) -> str:
    """``mparticle-klaviyo replay --enqueue PATH``: its summary line."""
    done = subprocess.run(
        [PYTHON, "-m", "mparticle_klaviyo", "replay", "--enqueue", str(path), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"replay --enqueue failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout.strip()


# ----------------------------------------------------------------------------- readings


async def get_json(url: str) -> Any:
    """GET a JSON document."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session,
        session.get(url) as response,
    ):
        response.raise_for_status()
        return await response.json()


async def metrics(url: str) -> dict[str, float]:
    """``serve``'s /metrics: every sample, keyed ``name{label=value,...}``, plus per-name totals."""
    from prometheus_client.parser import text_string_to_metric_families

    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        session.get(url + "/metrics") as response,
    ):
        text = await response.text()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
            samples[sample.name] = samples.get(sample.name, 0.0) + sample.value
    return samples


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MiB, from /proc/PID/status."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024  # kB
    return values["VmRSS"], values["VmHWM"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    """The processes ``pid`` started that still run (e.g. serve's planning workers)."""
    with contextlib.suppress(FileNotFoundError):
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores, every process), from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_seconds_of(pids: Sequence[int]) -> float:
    """``cpu_seconds`` summed over ``pids``; a process that has exited counts 0."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += cpu_seconds(pid)
    return total


def store_rows(path: Path) -> list[tuple[str, str, int]]:
    """(kind, key, state) of every job in the store (read-only, after ``serve`` stopped)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return [(str(k), str(key), int(s)) for k, key, s in conn.execute("SELECT kind, key, state FROM jobs")]


def fsync_ms(directory: Path, count: int = 100) -> tuple[float, float]:
    """(p50, p99) milliseconds of a 4 KiB append + fsync in ``directory``: the disk's state right now."""
    path = directory / "fsync-probe"
    times: list[float] = []
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    try:
        for _ in range(count):
            os.write(fd, b"x" * 4096)
            start = time.perf_counter()
            os.fsync(fd)
            times.append((time.perf_counter() - start) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    return percentile(times, 50), percentile(times, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def median(values: Sequence[float]) -> float:
    """The median, NaN when empty."""
    return statistics.median(values) if values else float("nan")


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    """Print how long a set-up step took (to stderr)."""
    start = time.perf_counter()
    yield
    print(f"  [{label}: {time.perf_counter() - start:.1f}s]", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- other source trees


@contextlib.contextmanager
def python_path(src: Path) -> Iterator[None]:
    """Children started inside run the package of the tree ``src`` (``PYTHONPATH=SRC/src``)."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(src / "src")
    try:
        yield
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved


def tree_name(src: Path) -> str:
    """The commit checked out at ``src``, and ``+changes`` when its ``src/`` differs from it."""
    git = ["git", "-C", str(src)]
    try:
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "src"], capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return str(src)
    return commit.stdout.strip() + (" +changes" if dirty.stdout.strip() else "")
