"""This node's delivery leases on Klaviyo accounts (many ``serve`` nodes on one PostgreSQL).

A ``LeaseKeeper`` heartbeats every third of the lease time: it renews the leases the node
holds, gives up those beyond its share and takes free ones (store/postgres_leases.py). A
dispatcher asks ``epoch(account)`` before each claim and send: a lease counts as held only
until ``ttl - margin`` after the start of the heartbeat that last renewed it (by this node's
monotonic clock), so a node cut off from the database stops delivering before another node may
take the account over. A lost or given-up lease wakes the dispatchers, which drop that term's
work at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.store.base import LeaseStore

log = logging.getLogger("mparticle_klaviyo.delivery")
# A lease counts as lost this share of its time before it ends in the database: room for a
# slow heartbeat round trip and for clock skew between nodes.
_MARGIN = 0.2


def account_key(connection: Connection) -> str:
    """The lease name of the Klaviyo account ``connection`` sends to (its URL and key, hashed: no secret)."""
    url, key = connection.account
    digest = hashlib.sha256(f"{url}\0{key.reveal()}".encode()).hexdigest()
    return f"klaviyo-{digest[:16]}"


def accounts_of(connections: Iterable[Connection]) -> dict[str, list[str]]:
    """Each account's lease name with the names of the connections sending to it."""
    accounts: dict[str, list[str]] = {}
    for connection in connections:
        accounts.setdefault(account_key(connection), []).append(connection.name)
    return accounts


def node_name() -> str:
    """A name for this process in the lease table: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class LeaseKeeper:
    """Holds this node's share of the delivery leases and says which it holds now."""

    def __init__(
        self,
        store: LeaseStore,
        node: str,
        accounts: Mapping[str, Sequence[str]],
        ttl_s: float,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.node = node
        self.accounts = {account: list(names) for account, names in accounts.items()}
        self.ttl_s = ttl_s
        self._on_change = on_change
        self._clock = clock
        self._wall = wall_clock
        self._held: dict[str, int] = {}
        self._valid_until = 0.0

    def epoch(self, account: str) -> int | None:
        """The epoch of this node's lease on ``account``, or None while it holds none (or may have lost it)."""
        if self._clock() >= self._valid_until:
            return None
        return self._held.get(account)

    def held(self) -> dict[str, int]:
        """The leases this node counts as held now: account -> epoch."""
        return {account: epoch for account in self._held if (epoch := self.epoch(account)) is not None}

    async def beat(self) -> None:
        """One heartbeat (on a thread of its own, so it never waits behind the store thread's work)."""
        started = self._clock()
        held = self.held()
        now = self._wall()
        mine = await asyncio.to_thread(self.store.hold_leases, self.node, self.accounts, held, now, self.ttl_s)
        before, self._held = self._held, mine
        self._valid_until = started + self.ttl_s * (1 - _MARGIN)
        if mine != before:
            log.info("delivery leases", extra={"node": self.node, "accounts": sorted(mine), "epochs": mine})
            self._on_change()

    async def run(self, stop: asyncio.Event) -> None:
        """Heartbeat every third of the lease time until ``stop``; a failed one is logged and tried again."""
        while not stop.is_set():
            try:
                await self.beat()
            except Exception:
                log.exception("delivery lease heartbeat failed", extra={"node": self.node})
                self._on_change()  # dispatchers look again: their leases may lapse meanwhile
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.ttl_s / 3)

    async def give_up(self) -> None:
        """Expire this node's leases now (a graceful stop), so other nodes take them at their next heartbeat."""
        self._held, self._valid_until = {}, 0.0
        self._on_change()
        await asyncio.to_thread(self.store.give_up_leases, self.node, sorted(self.accounts))
