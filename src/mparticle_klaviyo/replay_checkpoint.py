"""``replay``'s checkpoint: an interrupted replay continues with ``--resume``, sending nothing twice.

A replay keeps its job store in ``<first input>.replay-checkpoint/`` (``jobs.sqlite3``) with
``checkpoint.json`` beside it, rewritten (atomically) after every commit of planned jobs and
when the run stops:

* ``inputs``: each file's path, size and modification time; a resume of other or changed files
  is refused;
* ``position``: how many input items (batches, and documents that could not be read, in reading
  order) are planned with their jobs committed to the store. Nothing past it was queued, so a
  resume reads on from there (it reads the part before again, without planning it);
* ``reading``: the counts of those items (batches, events, drops, warnings, input errors, jobs
  queued), so that the summary of a resumed run covers the whole input;
* ``delivery``: what was settled so far (counts for the summary only).

The store holds every job not yet delivered, ready or dead-lettered: Klaviyo's acceptance of a
job deletes it (the ack), and its key stays in the store's dedup memory. Ctrl-C lets every unit
whose first request has gone out finish and settle first (``Dispatcher.quiesce``), so no job
Klaviyo accepted is left to send again; the units that had not sent go back to the queue. The
store commits before the position moves, so nothing is lost: a crash between the two makes the
resume read a few batches again, whose jobs the dedup memory refuses (a Ctrl-C during a commit
waits for the position to move, so the resumed summary's counts stay exact). A successful run deletes
the checkpoint; an interrupted, stopped (refused key) or failed one keeps it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

import msgspec

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.replay_stats import ReplayStats

SUFFIX = ".replay-checkpoint"
STORE_FILE = "jobs.sqlite3"
STATE_FILE = "checkpoint.json"
_VERSION = 1
# Delivery counts are rewritten at most this often between commits (the summary of a resume).
_SAVE_EVERY_S = 1.0


class InputFile(msgspec.Struct, frozen=True):
    """One input file as it was when the replay started."""

    path: str
    size: int
    mtime_ns: int


class Reading(msgspec.Struct, kw_only=True):
    """The counts of the input items up to the position."""

    batches: int = 0
    events_in: int = 0
    dropped: dict[str, int] = msgspec.field(default_factory=dict)
    warnings: dict[str, int] = msgspec.field(default_factory=dict)
    input_errors: list[tuple[str, str, str]] = msgspec.field(default_factory=list)
    queued_events: int = 0
    queued_consents: int = 0


class Delivery(msgspec.Struct, kw_only=True):
    """What was settled before the checkpoint was written (for the summary)."""

    settled: int = 0
    buried: int = 0
    events_delivered: int = 0
    consents_delivered: dict[str, int] = msgspec.field(default_factory=dict)
    requests: int = 0
    retried_jobs: int = 0
    throttled: int = 0
    elapsed_s: float = 0.0
    limiter_wait_s: float = 0.0


class State(msgspec.Struct, kw_only=True):
    """The content of ``checkpoint.json``."""

    version: int = _VERSION
    connection: str
    klaviyo_url: str
    inputs: list[InputFile]
    position: int = 0
    input_done: bool = False
    reading: Reading = msgspec.field(default_factory=Reading)
    delivery: Delivery = msgspec.field(default_factory=Delivery)


class CheckpointError(Exception):
    """The checkpoint cannot be used (absent, for other inputs, unreadable) or made."""


def location(paths: list[Path]) -> Path:
    """Where the checkpoint of a replay of ``paths`` lives: beside the first input."""
    first = paths[0].resolve()
    return first.with_name(first.name + SUFFIX)


def describe_inputs(paths: list[Path]) -> list[InputFile]:
    """The inputs as a checkpoint records them."""
    found = []
    for path in paths:
        stat = path.resolve().stat()
        found.append(InputFile(str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    return found


def reading_of(stats: ReplayStats) -> Reading:
    """The reading counts of ``stats`` (taken right after a commit)."""
    errors = [(where, error.pointer, error.message) for where, error in stats.input_errors]
    return Reading(
        batches=stats.batches,
        events_in=stats.events_in,
        dropped=dict(stats.dropped),
        warnings=dict(stats.warnings),
        input_errors=errors,
        queued_events=stats.queued_events,
        queued_consents=stats.queued_consents,
    )


def delivery_of(stats: ReplayStats) -> Delivery:
    """The delivery counts of ``stats``."""
    return Delivery(
        settled=stats.settled,
        buried=stats.buried,
        events_delivered=stats.events_delivered,
        consents_delivered=dict(stats.consents_delivered),
        requests=stats.requests,
        retried_jobs=stats.retried_jobs,
        throttled=stats.throttled,
        elapsed_s=stats.elapsed_s,
        limiter_wait_s=stats.limiter_wait_s,
    )


def restore_reading(stats: ReplayStats, reading: Reading) -> None:
    """Set the reading counts of ``stats`` to ``reading`` (what the position covers)."""
    stats.batches, stats.events_in = reading.batches, reading.events_in
    stats.dropped.clear()
    stats.dropped.update(reading.dropped)
    stats.warnings.clear()
    stats.warnings.update(reading.warnings)
    stats.input_errors = [(where, InputError(pointer, message)) for where, pointer, message in reading.input_errors]
    stats.queued_events, stats.queued_consents = reading.queued_events, reading.queued_consents


def restore(stats: ReplayStats, state: State) -> None:
    """Start ``stats`` where the checkpointed run left off."""
    restore_reading(stats, state.reading)
    done = state.delivery
    stats.settled, stats.buried, stats.events_delivered = done.settled, done.buried, done.events_delivered
    stats.consents_delivered.update(done.consents_delivered)
    stats.requests, stats.retried_jobs, stats.throttled = done.requests, done.retried_jobs, done.throttled
    stats.elapsed_s, stats.limiter_wait_s = done.elapsed_s, done.limiter_wait_s
    stats.settled_before = done.settled
    stats.input_done = state.input_done


class Checkpoint:
    """A replay's checkpoint directory: its store file and its state."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.store_path = directory / STORE_FILE
        self.state_path = directory / STATE_FILE

    def exists(self) -> bool:
        """Whether an interrupted replay left this checkpoint."""
        return self.state_path.exists()

    def create(self, state: State) -> None:
        """Make the directory (empty of any earlier store) and write the first state."""
        try:
            self.directory.mkdir(exist_ok=True)
            for leftover in self.directory.glob(STORE_FILE + "*"):
                leftover.unlink()
            self.save(state)
        except OSError as error:
            raise CheckpointError(f"cannot write a checkpoint in {self.directory}: {error.strerror}") from None

    def load(self, connection: Connection, inputs: list[InputFile]) -> State:
        """The state to resume from, if it is for these inputs and this connection."""
        if not self.exists() or not self.store_path.exists():
            raise CheckpointError(f"no checkpoint to resume at {self.directory}")
        try:
            state = msgspec.json.decode(self.state_path.read_bytes(), type=State)
        except (OSError, msgspec.DecodeError) as error:
            raise CheckpointError(f"cannot read the checkpoint {self.state_path}: {error}") from None
        problem = _mismatch(state, connection, inputs)
        if problem is not None:
            raise CheckpointError(f"the checkpoint {self.directory} is {problem}")
        return state

    def save(self, state: State) -> None:
        """Replace the state atomically: a crash leaves the old one or the new one, whole."""
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_bytes(msgspec.json.encode(state))
        os.replace(temporary, self.state_path)

    def discard(self) -> None:
        """Delete the checkpoint (the replay it was for is complete)."""
        shutil.rmtree(self.directory, ignore_errors=True)


def _mismatch(state: State, connection: Connection, inputs: list[InputFile]) -> str | None:
    """Why ``state`` is not a checkpoint of this replay, or None."""
    if state.version != _VERSION:
        return f"of another version ({state.version})"
    if (state.connection, state.klaviyo_url) != (connection.name, connection.klaviyo_url):
        return f"for connection {state.connection!r} at {state.klaviyo_url}"
    if [i.path for i in state.inputs] != [i.path for i in inputs]:
        return "for other input files: " + ", ".join(i.path for i in state.inputs)
    changed = [now.path for now, then in zip(inputs, state.inputs, strict=True) if now != then]
    if changed:
        return "for input files changed since: " + ", ".join(changed)
    return None


class Recorder:
    """Keeps a running replay's checkpoint up to date: at each commit, now and then, at the end."""

    def __init__(self, checkpoint: Checkpoint, state: State) -> None:
        self.checkpoint = checkpoint
        self.state = state
        self._saved_at = time.monotonic()

    @classmethod
    def begin(
        cls, checkpoint: Checkpoint, paths: list[Path], connection: Connection, stats: ReplayStats, resume: bool
    ) -> Recorder:
        """Resume the checkpointed run (``stats`` start where it left off), or start a new one."""
        inputs = describe_inputs(paths)
        if resume:
            state = checkpoint.load(connection, inputs)
            restore(stats, state)
        elif checkpoint.exists():
            raise CheckpointError(
                f"an interrupted replay of these files left a checkpoint at {checkpoint.directory}: "
                "add --resume to continue it, or delete it to start over"
            )
        else:
            state = State(connection=connection.name, klaviyo_url=connection.klaviyo_url, inputs=inputs)
            checkpoint.create(state)
        stats.checkpoint = str(checkpoint.directory)
        return cls(checkpoint, state)

    @property
    def position(self) -> int:
        """Input items already planned and committed: the resumed run reads on from there."""
        return self.state.position

    def committed(self, position: int, stats: ReplayStats) -> None:
        """The jobs of the first ``position`` items are in the store: move the position there."""
        self.state.position = position
        self.state.input_done = stats.input_done
        self.state.reading = reading_of(stats)
        self._save(stats)

    def progress(self, stats: ReplayStats) -> None:
        """Note the delivery counts, at most every ``_SAVE_EVERY_S`` seconds."""
        if time.monotonic() - self._saved_at >= _SAVE_EVERY_S:
            self._save(stats)

    def finish(self, stats: ReplayStats, complete: bool) -> None:
        """Delete the checkpoint of a complete run; otherwise save it, and make ``stats`` say what it covers."""
        if complete:
            self.checkpoint.discard()
            stats.checkpoint = None
            return
        # Items read after the last commit were not queued: the resume reads them again.
        restore_reading(stats, self.state.reading)
        stats.input_done = self.state.input_done
        self._save(stats)

    def _save(self, stats: ReplayStats) -> None:
        self.state.delivery = delivery_of(stats)
        # A checkpoint that could not be rewritten is an older one: its resume reads again what
        # the store's dedup refuses. Nothing is lost, so the run goes on.
        with contextlib.suppress(OSError):
            self.checkpoint.save(self.state)
        self._saved_at = time.monotonic()
