"""``bench/cluster.py``'s delivery part: per-account utilisation of the limit with several nodes.

The emulator runs in this process (``Emulator`` with both company ids), so that its answers can
be counted per company id; no load generator runs beside it, only a feeder of a few requests a
second. See ``bench/cluster.py`` for the scenario.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import msgspec
from aiohttp import web

from mparticle_klaviyo.klaviyo.emulator import Emulator, EmulatorConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))

from delivery import EVENTS_PER_BATCH_AT_KLAVIYO, GOAL_429_SHARE, GOAL_UTILISATION
from harness import Account, Child, bulk_bodies, free_port, median, metrics, start_serve, write_config
from pg import postgres_schema

ENDPOINT = "POST /client/events"
PER_SECOND, PER_MINUTE = 20, 600  # 10 requests/s steady: a 90 s run delivers ~900 events an account
LIMITS = {ENDPOINT: (PER_SECOND, PER_MINUTE)}
ACCOUNTS = (Account("acme", "DEMO01", "acme-key", "acme-secret"), Account("beta", "OTHER1", "beta-key", "beta-secret"))
BACKLOG_S = 60.0  # the backlog posted first: a minute of the limit, so delivery never waits for input
FEED_FACTOR = 2.0  # then batches keep arriving at twice what the limit lets out
WARM_UP_S = 5.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Answers = Counter[tuple[str, int]]  # (company id, status) of POST /client/events


class Delivery(msgspec.Struct, kw_only=True):
    """One run: per company, the answers of the limited endpoint over ``seconds``; the lease holders seen."""

    seconds: float
    answers: dict[str, dict[int, int]]
    holders: list[dict[str, str]]

    def per_second(self, company: str) -> float:
        """Requests the emulator accepted (202) per second for ``company``."""
        return self.answers.get(company, {}).get(202, 0) / self.seconds

    def utilisation(self, company: str) -> float:
        """Accepted requests per second over the steady limit's."""
        return self.per_second(company) / (PER_MINUTE / 60)

    def share_429(self, company: str) -> float:
        """429 answers over all answers of the limited endpoint for ``company``."""
        answers = self.answers.get(company, {})
        return answers.get(429, 0) / max(1, sum(answers.values()))


def counting_emulator(answers: Answers) -> web.Application:
    """The strict emulator serving both accounts at ``LIMITS``, counting answers per company id."""
    config = EmulatorConfig(company_ids=frozenset(a.public_key for a in ACCOUNTS), max_events_kept=0)
    config.rate_limits.update(LIMITS)

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.path == "/client/events":
            answers[(request.query.get("company_id", ""), response.status)] += 1
        return response

    app = Emulator(config).app()
    app.middlewares.append(count)
    return app


async def post(session: aiohttp.ClientSession, url: str, account: Account, body: bytes) -> int:
    """POST one bulk request to a node for ``account``; the status (0: no answer)."""
    headers = {"Authorization": account.auth, "Content-Type": "application/json"}
    try:
        async with session.post(url + "/v2/bulkevents", data=body, headers=headers) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


async def feed(urls: list[str], account: Account, first_user: int) -> None:
    """Post a backlog of ``BACKLOG_S`` of the limit, then one batch at a time at ``FEED_FACTOR`` x the limit."""
    batches_per_s = PER_MINUTE / 60 / EVENTS_PER_BATCH_AT_KLAVIYO
    backlog = round(BACKLOG_S * batches_per_s)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for n in range(backlog):
            await post(session, urls[n % len(urls)], account, bulk_bodies(1, 1, first_user + n)[0])
        n = backlog
        while True:
            await post(session, urls[n % len(urls)], account, bulk_bodies(1, 1, first_user + n)[0])
            n += 1
            await asyncio.sleep(1 / (FEED_FACTOR * batches_per_s))


async def lease_views(nodes: list[Child]) -> list[dict[str, str]]:
    """Per node, its /metrics' ``mpk_account_lease_holder``: connection -> holding node."""
    views = []
    for node in nodes:
        samples = await metrics(node.url)
        view = {}
        for name in samples:
            if name.startswith("mpk_account_lease_holder{"):
                labels = dict(pair.split("=", 1) for pair in name[name.index("{") + 1 : -1].split(","))
                view[labels["connection"]] = labels["node"]
        views.append(view)
    return views


async def measure(answers: Answers, duration_s: float) -> tuple[Answers, float]:
    """Wait until both accounts are being delivered (plus a warm-up), then count ``duration_s`` seconds."""
    deadline = time.monotonic() + 60
    while not all(answers[(a.public_key, 202)] for a in ACCOUNTS):
        if time.monotonic() > deadline:
            raise RuntimeError(f"an account was not delivered within 60 s: {dict(answers)}")
        await asyncio.sleep(0.2)
    await asyncio.sleep(WARM_UP_S)
    before, start = Counter(answers), time.monotonic()
    await asyncio.sleep(duration_s)
    return Counter(answers) - before, time.monotonic() - start


async def run_delivery(duration_s: float, count: int) -> Delivery:
    """``count`` nodes on a fresh schema deliver both accounts' traffic; the answers per account."""
    answers: Answers = Counter()
    runner = web.AppRunner(counting_emulator(answers), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    with tempfile.TemporaryDirectory(prefix="bench-cluster-delivery-") as tmp, contextlib.ExitStack() as stack:
        nodes: list[Child] = []
        try:
            nodes = await start_nodes(stack, Path(tmp), f"http://127.0.0.1:{port}", count)
            urls = [node.url for node in nodes]
            feeders = [asyncio.create_task(feed(urls, a, 1_000_000 * i)) for i, a in enumerate(ACCOUNTS)]
            window, seconds = await measure(answers, duration_s)
            holders = await lease_views(nodes)
            for task in feeders:
                task.cancel()
            await asyncio.gather(*feeders, return_exceptions=True)
        finally:
            # Stopped while this loop still answers them: a node's graceful stop waits for its sends.
            await asyncio.gather(*(asyncio.to_thread(node.stop) for node in nodes))
            await runner.cleanup()
    by_company: dict[str, dict[int, int]] = {}
    for (company, status), n in window.items():
        by_company.setdefault(company, {})[status] = n
    return Delivery(seconds=seconds, answers=by_company, holders=holders)


async def start_nodes(stack: contextlib.ExitStack, workdir: Path, klaviyo_url: str, count: int) -> list[Child]:
    """``count`` nodes on a fresh PostgreSQL schema, both connections in each config, all ready."""
    store = postgres_schema(stack)
    configs = [
        write_config(
            workdir,
            klaviyo_url,
            server_mode=False,
            rate_limits=LIMITS,
            name=f"node{i}",
            accounts=ACCOUNTS,
            store=store,
            shutdown_timeout_s=5.0,
        )
        for i in range(count)
    ]
    return list(await asyncio.gather(*(start_serve(stack, path, port) for path, port in configs)))


def describe_delivery(run: Delivery) -> str:
    """One run's figures per account, and the lease holders each node saw at the end."""
    lines = []
    for account in ACCOUNTS:
        company = account.public_key
        lines.append(
            f"  {account.name} ({company}): {run.per_second(company):.2f} requests/s accepted of"
            f" {PER_MINUTE / 60:g}/s -> utilisation {run.utilisation(company):.3f};"
            f" answers {run.answers.get(company, {})} (429 share {run.share_429(company):.4f}) in {run.seconds:.0f} s"
        )
    agree = all(view == run.holders[0] for view in run.holders)
    lines.append(f"  lease holders (node 0's view; all nodes agree: {'yes' if agree else 'NO'}): {run.holders[0]}")
    return "\n".join(lines)


def summarise_delivery(results: list[Delivery]) -> str:
    """Per account: median utilisation and 429 share, and whether the goal is met."""
    lines = []
    for account in ACCOUNTS:
        company = account.public_key
        utilisation = median([r.utilisation(company) for r in results])
        share = median([r.share_429(company) for r in results])
        met = utilisation >= GOAL_UTILISATION and share < GOAL_429_SHARE
        lines.append(
            f"  {account.name}: utilisation {utilisation:.3f} (limit = 1), 429 share {share:.4f}"
            f" (per run {', '.join(f'{r.utilisation(company):.3f}' for r in results)})"
            f" -> goal (>= {GOAL_UTILISATION:.0%} used, < {GOAL_429_SHARE:.0%} 429s) {'met' if met else 'NOT MET'}"
        )
    return "\n".join(lines)
