"""Delivery leases per Klaviyo account on PostgreSQL: at most one node delivers for an account.

Protocol (every step is one transaction of ``hold``, run by each node every heartbeat):

1. The node marks itself live (``nodes``: node, expires_at = now + ttl).
2. It renews the leases it holds (``account_leases`` rows naming it with an epoch it still
   counts as held); one it no longer counts as held is not renewed, and it takes it afresh
   below (a new epoch), so a term it abandoned is never continued.
3. Its share is ceil(accounts / live nodes). Held leases beyond the share are given up
   (expired at once), so a node that joins finds free accounts at its next heartbeat.
4. Below its share, it takes free accounts (no row, or expired; sorted, so nodes agree on the
   order): each take draws a new epoch from one sequence and returns the account's jobs still
   leased under an older epoch to READY (their owner is gone or fenced off).

Fencing: a job claimed under a lease records its epoch (``jobs.epoch``); a claim or settle
(ack, retry, bury, release) given an epoch first locks that epoch's lease row ``FOR SHARE`` and
raises ``LeaseLostError`` when no lease has it any more. A takeover must update that row, so it
waits for such a write, and every write that starts after the takeover is refused.

Times are the nodes' wall clocks (``now``): keep them in sync (NTP), and the ttl far above the skew.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from mparticle_klaviyo.store.base import JobState
from mparticle_klaviyo.store.errors import LeaseLostError

LEASED, READY = int(JobState.LEASED), int(JobState.READY)
Cursor = psycopg.Cursor[Any]


MARK_LIVE = """
INSERT INTO nodes (node, expires_at) VALUES (%(node)s, %(until)s)
ON CONFLICT (node) DO UPDATE SET expires_at = excluded.expires_at
"""
# Every process is a new node (its name has its pid): forget the dead after a day.
FORGET_NODES = "DELETE FROM nodes WHERE expires_at < %(now)s - 86400"
LIVE_NODES = "SELECT count(*) FROM nodes WHERE expires_at > %(now)s"
RENEW = """
UPDATE account_leases SET expires_at = %(until)s
WHERE node = %(node)s AND epoch = ANY(%(epochs)s::bigint[]) AND account = ANY(%(accounts)s::text[])
RETURNING account, epoch
"""
GIVE_UP = "UPDATE account_leases SET expires_at = -1 WHERE node = %(node)s AND account = ANY(%(accounts)s::text[])"
FREE = """
SELECT a FROM unnest(%(accounts)s::text[]) AS a
WHERE NOT EXISTS (
    SELECT 1 FROM account_leases l WHERE l.account = a AND l.expires_at > %(now)s AND l.node <> %(node)s
)
ORDER BY a
"""
# A lease of our own that we no longer count as held is taken afresh too (a new term).
TAKE = """
INSERT INTO account_leases AS l (account, node, epoch, expires_at)
VALUES (%(account)s, %(node)s, nextval('lease_epochs'), %(until)s)
ON CONFLICT (account) DO UPDATE SET node = excluded.node, epoch = excluded.epoch, expires_at = excluded.expires_at
WHERE l.expires_at <= %(now)s OR l.node = %(node)s
RETURNING epoch
"""
RELEASE_TAKEN = f"""
UPDATE jobs SET state = {READY}, lease_until = NULL
WHERE connection = ANY(%(connections)s::text[]) AND state = {LEASED} AND epoch IS DISTINCT FROM %(epoch)s
"""
CHECK = "SELECT 1 FROM account_leases WHERE epoch = %(epoch)s FOR SHARE"
HOLDERS = "SELECT account, node, epoch, expires_at FROM account_leases ORDER BY account"
NODES = "SELECT node, expires_at FROM nodes WHERE expires_at > %(now)s ORDER BY node"


def hold(
    cursor: Cursor,
    node: str,
    accounts: Mapping[str, Sequence[str]],
    held: Mapping[str, int],
    now: float,
    ttl: float,
) -> dict[str, int]:
    """One heartbeat of ``node`` (see the module docstring); the leases it holds now: account -> epoch.

    ``accounts``: every account this node delivers for, with its connections; ``held``: the
    leases the node still counts as held.
    """
    until = now + ttl
    cursor.execute(MARK_LIVE, {"node": node, "until": until})
    cursor.execute(FORGET_NODES, {"now": now})
    names = sorted(accounts)
    renewed = {
        row[0]: row[1]
        for row in _rows(cursor, RENEW, node=node, until=until, epochs=list(held.values()), accounts=names)
    }
    share = math.ceil(len(names) / max(1, _one(cursor, LIVE_NODES, now=now)))
    extra = sorted(renewed)[share:]
    if extra:
        cursor.execute(GIVE_UP, {"node": node, "accounts": extra})
    mine = {account: epoch for account, epoch in renewed.items() if account not in extra}
    # Free accounts, and ours that we no longer count as held (taken afresh: a new term).
    free = [row[0] for row in _rows(cursor, FREE, accounts=names, now=now, node=node) if row[0] not in mine]
    for account in free:
        if len(mine) >= share:
            break
        epoch = take(cursor, node, account, accounts[account], now, ttl)
        if epoch is not None:
            mine[account] = epoch
    return mine


def take(cursor: Cursor, node: str, account: str, connections: Sequence[str], now: float, ttl: float) -> int | None:
    """Take ``account``'s lease if it is free or ours; its new epoch, or None when another node holds it."""
    params = {"account": account, "node": node, "until": now + ttl, "now": now}
    row = cursor.execute(TAKE, params).fetchone()
    if row is None:
        return None
    epoch = int(row[0])
    # Jobs leased under an older epoch belong to a term that ended: back to READY for this one.
    cursor.execute(RELEASE_TAKEN, {"connections": list(connections), "epoch": epoch})
    return epoch


def give_up(cursor: Cursor, node: str, accounts: Sequence[str]) -> None:
    """Expire ``node``'s leases of ``accounts`` now (a stop): other nodes take them at their next heartbeat."""
    cursor.execute(GIVE_UP, {"node": node, "accounts": list(accounts)})
    cursor.execute("DELETE FROM nodes WHERE node = %(node)s", {"node": node})


def check(cursor: Cursor, epoch: int | None) -> None:
    """Raise ``LeaseLostError`` unless ``epoch`` (if any) is a current lease; hold it until the transaction ends."""
    if epoch is not None and cursor.execute(CHECK, {"epoch": epoch}).fetchone() is None:
        raise LeaseLostError(epoch)


def _rows(cursor: Cursor, query: str, **params: Any) -> list[tuple[Any, ...]]:
    return cursor.execute(query, params).fetchall()


def _one(cursor: Cursor, query: str, **params: Any) -> int:
    row = cursor.execute(query, params).fetchone()
    return 0 if row is None else int(row[0])
