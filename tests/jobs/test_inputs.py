"""Reading inputs: each item knows its file and line (for replay's progress estimate)."""

from __future__ import annotations

import json
from pathlib import Path

from mparticle_klaviyo.jobs.inputs import read_inputs


def test_each_item_carries_the_index_of_its_file_and_its_line(tmp_path: Path) -> None:
    batch = {"events": [], "user_identities": {"email": "a@example.com"}}
    first, second = tmp_path / "a.jsonl", tmp_path / "b.json"
    first.write_text(json.dumps(batch) + "\n\n" + json.dumps(batch) + "\n" + "{broken\n")
    second.write_text(json.dumps(batch, indent=2))  # one pretty-printed document: line 0
    items = list(read_inputs([first, second]))
    assert [(item.file, item.line, item.error is None) for item in items] == [
        (0, 1, True),
        (0, 3, True),
        (0, 4, False),
        (1, 0, True),
    ]
