"""What a replay counts: every batch and event read, and the fate of every job it queued."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.jobs.plan import EVENT, SUBSCRIPTION
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest
from mparticle_klaviyo.store.base import Job

ACCOUNT_MISMATCH = "account_mismatch"
# A server- or client-mode event the replay already queued (same time, unique_id, metric, profile).
DUPLICATE_IN_INPUT = "duplicate_in_input"


class ReplayStats:
    """What happened to every batch and event of a replay.

    Reading counts mParticle events (``events_in``, ``dropped``). A job is one mParticle event
    or one consent change of a profile (``queued_*``, ``settled``, ``failed``);
    ``events_delivered`` counts Klaviyo events, of which a purchase makes one more per product.
    """

    def __init__(self) -> None:
        self.batches = 0
        self.input_errors: list[tuple[str, InputError]] = []
        self.events_in = 0
        self.dropped: Counter[str] = Counter()
        self.warnings: Counter[str] = Counter()
        self.queued_events = 0
        self.queued_consents = 0
        self.input_done = False
        self.settled = 0
        self.buried = 0
        self.events_delivered = 0
        self.consents_delivered: Counter[str] = Counter()
        # Filled at the end from the dead letters (and the jobs a stop left undelivered).
        self.failed: Counter[str] = Counter()
        self.failure_details: dict[str, str] = {}
        self.stopped: str | None = None
        self.requests = 0
        self.retried_jobs = 0
        self.throttled = 0
        self.elapsed_s = 0.0
        self.limiter_wait_s = 0.0
        # For the progress bar's total and ETA: the lines of each input file (None: not counted
        # yet), where reading is (file index, line), and what earlier runs of a resumed replay
        # settled (this run's rate leaves it out).
        self.file_lines: list[int] | None = None
        self.reading_at = (0, 0)
        self.settled_before = 0
        # Ctrl-C: the run stopped early; where its checkpoint is (None: it could not leave one).
        self.interrupted = False
        self.checkpoint: str | None = None

    @property
    def queued_total(self) -> int:
        """Jobs queued for delivery so far."""
        return self.queued_events + self.queued_consents

    @property
    def subscriptions_delivered(self) -> int:
        """Consent subscriptions (one per profile and channel set) that Klaviyo accepted."""
        return self.consents_delivered[SUBSCRIPTION]

    @property
    def failed_total(self) -> int:
        """Jobs that were not delivered: dead-lettered, or left behind by a stop."""
        return sum(self.failed.values())

    def expected_total(self) -> tuple[int | None, bool]:
        """Jobs this replay will have queued, and whether that is an estimate.

        Exact once the input is read; before, the jobs queued so far scaled by the share of
        input lines read; None while nothing is known.
        """
        if self.input_done:
            return self.queued_total, False
        lines = self.file_lines
        if not lines or self.queued_total == 0:
            return None, True
        file, line = self.reading_at
        read = sum(lines[:file]) + line
        if read <= 0:
            return None, True
        share = min(read / max(sum(lines), 1), 1.0)
        return max(round(self.queued_total / share), self.queued_total), True

    def eta_s(self, elapsed_s: float) -> float | None:
        """Seconds left at this run's rate of settling (``elapsed_s`` into it); None while unknown."""
        total, _ = self.expected_total()
        settled_now = self.settled - self.settled_before
        if total is None or settled_now <= 0 or elapsed_s <= 0:
            return None
        return max(total - self.settled, 0) / (settled_now / elapsed_s)

    def add_dead_letter(self, job: Job) -> None:
        """Count one dead-lettered job under its reason; the first job's detail explains the reason."""
        reason = job.dead_reason or "unknown"
        self.failed[reason] += 1
        self.failure_details.setdefault(reason, job.last_error or "")


class SettleCounter:
    """The dispatcher's observer: counts jobs as they are delivered or dead-lettered."""

    def __init__(self, stats: ReplayStats, on_progress: Callable[[], None] | None = None) -> None:
        self.stats = stats
        self._on_progress = on_progress

    def acked(self, jobs: Sequence[Job], requests: Sequence[KlaviyoRequest]) -> None:
        """Count the delivered jobs, and the Klaviyo events their requests carried."""
        self.stats.settled += len(jobs)
        # Event requests name each Klaviyo event they carry; consent requests name none.
        self.stats.events_delivered += sum(len(request.event_keys) for request in requests)
        self.stats.consents_delivered.update(job.kind for job in jobs if job.kind != EVENT)
        self.progress()

    def buried(self, jobs: Sequence[Job], reason: str) -> None:
        """Count the dead-lettered jobs (their reasons are read from the store at the end)."""
        self.stats.settled += len(jobs)
        self.stats.buried += len(jobs)
        self.progress()

    def progress(self) -> None:
        """Tell the progress display that the counts moved."""
        if self._on_progress is not None:
            self._on_progress()
