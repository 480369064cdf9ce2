"""deploy/grafana and deploy/prometheus: every metric they use is served; promtool accepts the rules.

The metric names are read from the files as they are (any ``mpk_*`` word, in expressions, labels
and template queries alike) and looked up among the samples of a real ``serve``'s ``/metrics``
after it ingested, delivered, retried, throttled and dead-lettered a few events, so that its
labelled series exist. The lease holders (``mpk_account_lease_holder``) have series only on a
shared PostgreSQL store, so the same check runs once more with ``serve`` on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml  # type: ignore[import-untyped]
from prometheus_client.parser import text_string_to_metric_families

from mparticle_klaviyo.klaviyo.emulator import RunningEmulator
from tests.conftest import REPO, skip_or_fail
from tests.service.messages import batch, event
from tests.service.served import Served, wait_for_events, with_emulator, write_config

DASHBOARD = REPO / "deploy" / "grafana" / "mparticle-klaviyo.json"
RULES = REPO / "deploy" / "prometheus" / "mparticle-klaviyo.rules.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "mparticle-klaviyo.rules.test.yml"
METRIC = re.compile(r"\bmpk_[a-z0-9_]+")
# A dead letter (400), a retry (503) and a 429, on the first three requests to Klaviyo.
FAULTS = [
    {"status": 400, "count": 1, "path": "/client/events"},
    {"status": 503, "count": 1, "path": "/client/events"},
    {"status": 429, "count": 1, "path": "/client/events"},
]
EVENTS_KEY, EVENTS_SECRET = "events-key", "events-secret"
# Series only a shared (PostgreSQL) store has: a single SQLite node holds no lease.
SHARED_STORE_ONLY = frozenset({"mpk_account_lease_holder"})


def used_metrics(path: Path) -> set[str]:
    """Every ``mpk_*`` name in the file."""
    return set(METRIC.findall(path.read_text()))


def sample_names(text: str) -> set[str]:
    """The sample names of a /metrics text."""
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


async def scrape_until(session: aiohttp.ClientSession, url: str, names: set[str], timeout_s: float = 20.0) -> str:
    """/metrics once it has samples of ``names`` (gauges are refreshed every few seconds), or at the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with session.get(url + "/metrics") as response:
            text = await response.text()
        if names <= sample_names(text) or time.monotonic() > deadline:
            return text
        await asyncio.sleep(0.5)


def served_samples(tmp_path: Path, wait_for: frozenset[str] = frozenset(), **service: str) -> set[str]:
    """The sample names of a real serve's /metrics once it has ingested and delivered with faults."""

    async def scenario(emulator: RunningEmulator) -> str:
        connection = {
            "public_api_key": "DEMO01",
            "klaviyo_url": emulator.url,
            "events_api_key": EVENTS_KEY,
            "events_api_secret": EVENTS_SECRET,
        }
        async with aiohttp.ClientSession() as session:
            for fault in FAULTS:
                await session.post(f"{emulator.url}/_emulator/faults", json=fault)
            served = await Served.start(write_config(tmp_path, {"acme": connection}, **service))
            auth = {"Authorization": "Basic " + base64.b64encode(f"{EVENTS_KEY}:{EVENTS_SECRET}".encode()).decode()}
            try:
                documents: list[Any] = [batch(f"u{n}@example.com", [event(message_id=f"m{n}")]) for n in range(4)]
                documents.append({"events": [event(message_id="nobody")]})  # dropped: no email or phone
                for document in documents:
                    async with session.post(served.url + "/v2/events", json=document, headers=auth) as response:
                        assert response.status == 202
                async with session.post(served.url + "/v2/events", data=b"{", headers=auth) as response:
                    assert response.status == 400  # a refused ingest request
                await wait_for_events(emulator, 3)
                return await scrape_until(session, served.url, set(wait_for))
            finally:
                await served.stop()

    return sample_names(with_emulator(scenario))


def test_every_metric_the_dashboard_and_the_alerts_use_is_served(tmp_path: Path) -> None:
    served = served_samples(tmp_path)
    dashboard, rules = used_metrics(DASHBOARD), used_metrics(RULES)
    assert len(dashboard) >= 20 and len(rules) >= 7, "the files are read"
    assert sorted((dashboard | rules) - served - SHARED_STORE_ONLY) == []
    assert [name for name in served if name.endswith("_created")] == []


def test_every_metric_the_dashboard_and_the_alerts_use_is_served_on_a_shared_postgresql_store(
    tmp_path: Path, postgres_url: str
) -> None:
    served = served_samples(tmp_path, SHARED_STORE_ONLY, store=postgres_url)
    used = used_metrics(DASHBOARD) | used_metrics(RULES)
    assert used >= SHARED_STORE_ONLY, "the dashboard shows the lease holders"
    assert sorted(used - served) == []


def test_the_alerts_cover_backlog_age_dead_letters_429s_pauses_and_ingest_5xx() -> None:
    rules = {rule["alert"]: rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    expressions = {name: rule["expr"] for name, rule in rules.items()}
    assert "mpk_oldest_job_age_seconds" in expressions["MpkBacklogOld"]
    assert "rate(mpk_jobs_dead_lettered_total" in expressions["MpkDeadLetters"]
    assert {"mpk_klaviyo_429_total", "mpk_klaviyo_requests_total"} <= set(METRIC.findall(expressions["MpkThrottled"]))
    assert "mpk_credentials_ok" in expressions["MpkDeliveryPaused"]
    assert 'mpk_requests_rejected_total{status=~"5.."}' in expressions["MpkIngest5xx"]
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_the_dashboard_is_a_grafana_dashboard_on_a_chosen_prometheus() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert dashboard["uid"] == "mparticle-klaviyo"
    assert len({panel["id"] for panel in panels}) == len(panels)
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for panel in panels:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert METRIC.search(target["expr"]), target


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        skip_or_fail("promtool is not installed (Debian's prometheus package; .ci/run installs it)")
    return found


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    tool = promtool()
    for command in (["check", "rules", RULES.name], ["test", "rules", RULE_TESTS.name]):
        done = subprocess.run([tool, *command], cwd=RULES.parent, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
