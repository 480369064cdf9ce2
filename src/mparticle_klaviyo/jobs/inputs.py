"""Files -> batches -> mapped batches: the input side that ``map`` and ``replay`` share."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.mapping.batch import map_batch
from mparticle_klaviyo.mapping.result import MappedBatch
from mparticle_klaviyo.mparticle.files import read_records
from mparticle_klaviyo.mparticle.model import UserBatch
from mparticle_klaviyo.overrides import connection_for_request


class InputItem(msgspec.Struct, frozen=True):
    """One batch read from a file (``number`` counts batches across all files), or an error.

    ``file`` is the index of its file among those read, ``line`` its line (0: a whole-file document).
    """

    location: str
    number: int
    batch: UserBatch | None = None
    error: InputError | None = None
    file: int = 0
    line: int = 0


class Mapped(msgspec.Struct, frozen=True):
    """A batch's mapping and the connection (with any Firehose settings) it was mapped with."""

    item: InputItem
    connection: Connection
    result: MappedBatch


def read_inputs(paths: Iterable[Path]) -> Iterator[InputItem]:
    """Every batch of every file in order, with decode errors in place of the bad documents."""
    number = 0
    for index, path in enumerate(paths):
        for record in read_records(path):
            if record.error is not None:
                yield InputItem(record.location, number, error=record.error, file=index, line=record.line)
                continue
            for batch in record.batches or ():
                yield InputItem(record.location, number, batch=batch, file=index, line=record.line)
                number += 1


def map_item(item: InputItem, connection: Connection, now_ms: float) -> Mapped:
    """Map one batch with its connection; Firehose settings override the configured ones.

    Raises ``InputError`` when a Firehose setting is invalid.
    """
    assert item.batch is not None
    effective = connection_for_request(connection, item.batch.settings)
    return Mapped(item, effective, map_batch(item.batch, effective.mapping, now_ms))
