"""Refused credentials pause a connection's delivery; a probe or an operator's ``resume`` ends it.

``CredentialGuard`` is the dispatcher's side: it turns a 401/403 into a pause (the pure state
machine of ``delivery/credentials.py``), sends the probes (an empty request to the refused
endpoint, ``klaviyo/check.py``), and makes the pause visible: one ERROR log line, the gauges
``mpk_credentials_ok`` and ``mpk_credentials_refused_since_seconds``.

``ResumeRequests`` is how ``mparticle-klaviyo resume CONNECTION`` reaches the running ``serve``:
a file in the directory ``<store>.resume/`` (written whole, then renamed into place), which
``serve`` reads and deletes every half second. No port is opened and no credential is needed:
whoever may write next to the store may already do much more, and the worst a request can do is
make one probe go early (delivery resumes only if Klaviyo accepts the probe).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import msgspec

from mparticle_klaviyo.delivery.circuit import Paused
from mparticle_klaviyo.delivery.clock import Clock, MonotonicClock
from mparticle_klaviyo.delivery.credentials import CredentialOptions, Credentials
from mparticle_klaviyo.delivery.lane import Lane, Transport
from mparticle_klaviyo.delivery.report import Tally
from mparticle_klaviyo.klaviyo.check import Accepted, Inconclusive, Refusal, Verdict, judge, probe_request, refusal_of
from mparticle_klaviyo.klaviyo.classify import Outcome
from mparticle_klaviyo.observe.metrics import Metrics, iso_time

log = logging.getLogger("mparticle_klaviyo.delivery")
CAUSE = "credentials_refused"
RESUME_POLL_S = 0.5
# Klaviyo's error code becomes a metric label: only a short code of safe characters is kept.
_CODE = re.compile(r"[a-z0-9_]{1,64}")


class CredentialGuard:
    """One connection's credentials: paused on a 401/403, probing until Klaviyo accepts them."""

    def __init__(
        self,
        connection: str,
        client: Callable[[], Transport],
        lanes: Mapping[str, Lane],
        metrics: Metrics,
        options: CredentialOptions | None = None,
        *,
        clock: Clock | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.connection = connection
        self._client = client  # asked at each probe: the dispatcher's client may be replaced
        self._lanes = lanes
        self._metrics = metrics
        self._options = options if options is not None else CredentialOptions()
        self.state = Credentials(clock or MonotonicClock(), self._options)
        self._wake = wake or (lambda: None)
        self._probe: asyncio.Task[None] | None = None
        self._series: tuple[str, str, str, str] | None = None  # the refused-since gauge's labels
        self._since = 0.0
        metrics.credentials_ok.labels(connection).set(1)
        for verdict in ("accepted", "refused", "inconclusive"):
            metrics.credential_probes.labels(connection, verdict)  # exported at 0 from the start

    def allowance(self, wanted: int) -> int:
        """How many jobs may be claimed: all wanted, or none while paused."""
        return self.state.allowance(wanted)

    def paused(self) -> bool:
        """Whether delivery is paused by refused credentials."""
        return self.state.paused()

    def cause(self) -> str:
        """The error a postponed job carries: ``credentials_refused: 403 permission_denied on POST ...``."""
        refusal = self.state.refusal
        return f"{CAUSE}: {refusal.describe()}" if refusal is not None else CAUSE

    def stops(self, endpoint: str, sent: Outcome | Paused) -> bool:
        """Whether a unit's request stops here for the credentials: held unsent, or refused (401/403)."""
        if isinstance(sent, Paused):
            return self.paused()
        return self.refused(endpoint, sent)

    def refused(self, endpoint: str, outcome: Outcome) -> bool:
        """Whether ``outcome`` refused the credentials (then delivery is paused, if it was not yet)."""
        refusal = refusal_of(endpoint, outcome)
        if refusal is None:
            return False
        if self.state.refused(refusal):
            self._since = time.time()
            self._show(refusal)
            log.error(
                "delivery paused: Klaviyo answered %s; probing every %g s, or run `mparticle-klaviyo resume %s`",
                refusal.describe(),
                self._options.probe_every_s,
                self.connection,
                extra=self._fields(refusal),
            )
        return True

    def tick(self) -> None:
        """Send the probe if one is due (call often: the dispatcher's loop does)."""
        if self._probe is not None:
            return
        refusal = self.state.take_probe()
        if refusal is not None:
            self._probe = asyncio.create_task(self._send_probe(refusal))

    def resume(self) -> bool:
        """An operator asked to resume: probe at once; whether delivery was paused."""
        paused = self.state.resume_now()
        self.tick()
        return paused

    async def close(self) -> None:
        """Stop a probe that is out (shutdown)."""
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)

    async def _send_probe(self, refusal: Refusal) -> None:
        try:
            verdict = await self._ask(refusal.endpoint)
        except asyncio.CancelledError:
            self.state.abandoned()
            raise
        finally:
            self._probe = None
        self._settle(refusal, verdict)

    async def _ask(self, endpoint: str) -> Verdict:
        request = probe_request(endpoint)
        lane = self._lanes.get(endpoint)
        try:
            # Through the lane: a probe too waits for a closed gate and takes a limiter token.
            client = self._client()
            outcome = await (lane.send(client, request, Tally()) if lane else client.send(request))
        except Exception as error:  # an error of ours: say so, and probe again after a while
            log.exception("credentials probe failed", extra={"connection": self.connection})
            return Inconclusive(reason="internal_error", detail=type(error).__name__)
        return judge(endpoint, outcome)

    def _settle(self, refusal: Refusal, verdict: Verdict) -> None:
        self.state.probed(verdict)
        self._metrics.credential_probes.labels(self.connection, _verdict_label(verdict)).inc()
        if not self.state.paused():
            self._hide()
            self._metrics.credentials_ok.labels(self.connection).set(1)
            log.info(
                "delivery resumed: Klaviyo accepted the credentials after %.1f s paused",
                time.time() - self._since,
                extra={"connection": self.connection, "endpoint": refusal.endpoint},
            )
            self._wake()
        elif isinstance(verdict, Refusal) and verdict.describe() != refusal.describe():
            self._show(verdict)
            log.error(
                "delivery still paused: Klaviyo now answers %s",
                verdict.describe(),
                extra=self._fields(verdict),
            )

    def _show(self, refusal: Refusal) -> None:
        """The gauges say paused, since when, and what Klaviyo answered (one series at a time)."""
        self._hide()
        code = refusal.code if _CODE.fullmatch(refusal.code) else f"http_{refusal.status}"
        self._series = (self.connection, refusal.endpoint, str(refusal.status), code)
        self._metrics.credentials_refused_since.labels(*self._series).set(self._since)
        self._metrics.credentials_ok.labels(self.connection).set(0)

    def _hide(self) -> None:
        if self._series is not None:
            self._metrics.credentials_refused_since.remove(*self._series)
            self._series = None

    def _fields(self, refusal: Refusal) -> dict[str, object]:
        """Log fields of a refusal. Klaviyo's detail names what is wrong (a missing scope); the client
        has already redacted our keys from it, and a refusal comes before Klaviyo reads the body."""
        return {
            "connection": self.connection,
            "endpoint": refusal.endpoint,
            "status": refusal.status,
            "code": refusal.code,
            "detail": refusal.detail,
            "since": iso_time(self._since),
        }


def _verdict_label(verdict: Verdict) -> str:
    if isinstance(verdict, Accepted):
        return "accepted"
    return "refused" if isinstance(verdict, Refusal) else "inconclusive"


class _Request(msgspec.Struct, frozen=True):
    connection: str


class ResumeRequests:
    """``resume`` requests for the running ``serve``: one file each in ``<store>.resume/``."""

    def __init__(self, store: Path | str) -> None:
        self.directory = Path(f"{store}.resume")

    def ask(self, connection: str) -> Path:
        """Leave a request to resume ``connection``; written whole before it appears."""
        self.directory.mkdir(exist_ok=True)
        name = f"{time.time_ns()}-{uuid.uuid4().hex}"
        partial = self.directory / f".{name}.tmp"
        partial.write_bytes(msgspec.json.encode(_Request(connection)))
        final = self.directory / f"{name}.json"
        os.replace(partial, final)  # atomic: serve never reads half a request
        return final

    def take(self) -> list[str]:
        """The connections asked for since the last call, oldest first; their files are deleted."""
        try:
            names = sorted(p for p in self.directory.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
        except FileNotFoundError:
            return []
        taken: list[str] = []
        for path in names:
            with contextlib.suppress(FileNotFoundError, msgspec.DecodeError):
                taken.append(msgspec.json.decode(path.read_bytes(), type=_Request).connection)
            path.unlink(missing_ok=True)  # a request that cannot be read is dropped, not retried forever
        return taken


async def answer_resume_requests(
    requests: ResumeRequests, guards: Mapping[str, CredentialGuard], stop: asyncio.Event, every_s: float = RESUME_POLL_S
) -> None:
    """Until ``stop``: apply each ``resume`` request to its connection's guard (``serve``)."""
    while not stop.is_set():
        try:
            for name in requests.take():
                guard = guards.get(name)
                paused = guard.resume() if guard is not None else False
                log.info("resume requested", extra={"connection": name, "paused": paused, "known": guard is not None})
        except OSError as error:
            log.warning(
                "cannot read resume requests: %s", type(error).__name__, extra={"path": str(requests.directory)}
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
