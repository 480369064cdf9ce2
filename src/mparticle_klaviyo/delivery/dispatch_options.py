"""The dispatcher's knobs, and the lanes of one Klaviyo account."""

from __future__ import annotations

import msgspec

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.delivery.circuit import Circuit, CircuitOptions
from mparticle_klaviyo.delivery.clock import MonotonicClock
from mparticle_klaviyo.delivery.credentials import CredentialOptions
from mparticle_klaviyo.delivery.lane import Lane


class DispatchOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Knobs of delivery."""

    claim_batch: int = 1000
    max_in_flight_jobs: int = 4000
    lease_s: float = 120.0
    poll_s: float = 0.25
    max_attempts: int = 8
    max_age_s: float = 7 * 86400
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 600.0
    default_retry_after_s: float = 1.0
    max_retry_after_s: float = 600.0
    release_every_s: float = 10.0
    max_concurrency: int = 64
    # True when this process is known to be the store's only deliverer (``serve`` holds the
    # store's OwnerLock): every lease found at start is a dead process's and is released at
    # once, and leases never expire while it runs (a unit waiting long in the limiter's queue
    # is not claimed and sent a second time). Otherwise expired leases are released every
    # ``release_every_s``.
    sole_owner: bool = False
    # When the account's circuit opens (Klaviyo unreachable) and how often it probes.
    circuit: CircuitOptions = msgspec.field(default_factory=CircuitOptions)
    # How often a connection paused by a 401/403 probes Klaviyo.
    credentials: CredentialOptions = msgspec.field(default_factory=CredentialOptions)


def account_lanes(connection: Connection, options: DispatchOptions) -> dict[str, Lane]:
    """One lane (Retry-After gate, two-window limiter, AIMD) per rate-limited endpoint of an account."""
    clock = MonotonicClock()
    circuit = Circuit(clock, options.circuit)  # one per account: an outage is the account's, not an endpoint's
    return {
        endpoint: Lane(limit, clock, max_concurrency=options.max_concurrency, circuit=circuit)
        for endpoint, limit in connection.rate_limits.items()
    }
