"""Decode + map throughput on one core, beside msgspec decode-only of the same input.

    .venv/bin/python bench/map_throughput.py [--batches 2000] [--runs 7]

Each run decodes and maps every batch (10 events each, all six types) into Klaviyo requests
(client mode), with the phone-number cache cleared so each user's phone is parsed afresh.
Prints the median events/s of both and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mparticle_klaviyo.delivery.payloads import client_event_request, subscription_request
from mparticle_klaviyo.mapping.batch import map_batch
from mparticle_klaviyo.mapping.phone import to_e164
from mparticle_klaviyo.mapping.settings import MappingSettings
from mparticle_klaviyo.mparticle.batch import Batch
from mparticle_klaviyo.mparticle.decode import decode_document
from workload import encoded_batches

EVENTS_PER_BATCH = 10
SETTINGS = MappingSettings(consent_mapping={"email_marketing": "email"}, list_id="LIST01", default_phone_region="US")


def decode_only(raws: list[bytes]) -> int:
    """Baseline: msgspec typed decode of each batch, nothing else."""
    decoder = msgspec.json.Decoder(Batch)
    for raw in raws:
        decoder.decode(raw)
    return len(raws) * EVENTS_PER_BATCH


def decode_and_map(raws: list[bytes]) -> int:
    """Decode, normalise, map and build every Klaviyo request; every user's phone is new."""
    to_e164.cache_clear()
    return _decode_and_map(raws)


def decode_and_map_returning_users(raws: list[bytes]) -> int:
    """The same, with the phone cache warm: users seen before (the common case in production)."""
    return _decode_and_map(raws)


def _decode_and_map(raws: list[bytes]) -> int:
    now_ms = time.time() * 1000
    requests = 0
    for raw in raws:
        for batch in decode_document(raw):
            mapped = map_batch(batch, SETTINGS, now_ms)
            requests += len([client_event_request(e) for e in mapped.events])
            requests += len([subscription_request(s, SETTINGS.list_id, False) for s in mapped.subscriptions])
    assert requests >= len(raws) * EVENTS_PER_BATCH, requests
    return len(raws) * EVENTS_PER_BATCH


def timed(work: Callable[[list[bytes]], int], raws: list[bytes]) -> float:
    """Events per second of one run."""
    start = time.perf_counter()
    events = work(raws)
    return events / (time.perf_counter() - start)


def main() -> None:
    """Run the benchmark and print medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    raws = encoded_batches(args.batches)
    decode_and_map(raws[:50])  # warm imports and caches of code paths, not of phones
    base, cold, warm = [], [], []
    for _ in range(args.runs):
        base.append(timed(decode_only, raws))
        cold.append(timed(decode_and_map, raws))
        warm.append(timed(decode_and_map_returning_users, raws))
    base_median, cold_median, warm_median = (statistics.median(x) for x in (base, cold, warm))
    print(f"workload: {args.batches} batches x {EVENTS_PER_BATCH} events, {args.runs} runs, one core")
    print(f"decode only (msgspec, baseline):          {base_median:10,.0f} events/s (median)")
    print(f"decode + map + requests, new users:       {cold_median:10,.0f} events/s (median)")
    print(f"decode + map + requests, returning users: {warm_median:10,.0f} events/s (median)")
    print(
        f"(decode + map) time / decode-only time:   {base_median / cold_median:10.2f}x new, "
        f"{base_median / warm_median:.2f}x returning"
    )


if __name__ == "__main__":
    main()
