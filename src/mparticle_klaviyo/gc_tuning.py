"""Garbage-collector settings for long-running processes: ``serve`` and its planning workers."""

from __future__ import annotations

import gc

GC_YOUNG_THRESHOLD = 20_000


def tune_gc() -> None:
    """Keep garbage-collection pauses out of the accept latency (call once, after start-up).

    Measured under ingest load with CPython's defaults (``bench/ingest.py``): 48 full (gen 2)
    collections in 40 s, up to 81 ms each, every thread stopped meanwhile; they set the p99
    accept latency. Freezing what start-up allocated (modules, phone metadata, mapping tables)
    takes it out of every later collection, and a higher young threshold makes the mapping's
    short-lived dicts trigger far fewer collections of every generation (then: 2 full ones).
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
