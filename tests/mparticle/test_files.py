"""Batch files: one JSON document, or JSON lines, optionally gzipped; bad parts become error records."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from mparticle_klaviyo.mparticle.files import count_lines, open_input, read_records
from tests.mapping.builders import batch_doc, custom, encode


def line(n: int) -> bytes:
    return encode(batch_doc(custom(f"E{n}"), source_request_id=f"r{n}")) + b"\n"


def summary(path: Path) -> list[tuple[str, list[str] | None, str | None]]:
    """(location relative to the file, batch keys, error message) of each record."""
    return [
        (
            r.location.removeprefix(str(path)),
            None if r.batches is None else [str(b.batch_key) for b in r.batches],
            None if r.error is None else r.error.message,
        )
        for r in read_records(path)
    ]


def test_a_single_line_json_file_is_one_record_at_line_one(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_bytes(line(0))
    assert summary(path) == [(":1", ["r0"], None)]


def test_a_pretty_printed_file_is_one_document_without_a_line_number(tmp_path: Path) -> None:
    path = tmp_path / "pretty.json"
    path.write_text(json.dumps(batch_doc(custom(), source_request_id="r0"), indent=2))
    assert summary(path) == [("", ["r0"], None)]


def test_a_pretty_printed_bulk_array_is_one_record_with_every_batch(tmp_path: Path) -> None:
    path = tmp_path / "bulk.json"
    docs = [batch_doc(source_request_id="a"), batch_doc(source_request_id="b")]
    path.write_text(json.dumps(docs, indent=1))
    assert summary(path) == [("", ["a", "b"], None)]


def test_json_lines_give_one_record_per_line_with_its_number(tmp_path: Path) -> None:
    path = tmp_path / "batches.jsonl"
    path.write_bytes(line(0) + b"\n   \n" + line(1) + line(2))
    assert summary(path) == [(":1", ["r0"], None), (":4", ["r1"], None), (":5", ["r2"], None)]


def test_leading_blank_lines_keep_true_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "batches.jsonl"
    path.write_bytes(b"\n\n" + line(0))
    assert summary(path) == [(":3", ["r0"], None)]


def test_a_line_may_hold_a_bulk_array(tmp_path: Path) -> None:
    path = tmp_path / "bulk.jsonl"
    path.write_bytes(encode([batch_doc(source_request_id="a"), batch_doc(source_request_id="b")]) + b"\n" + line(0))
    assert summary(path) == [(":1", ["a", "b"], None), (":2", ["r0"], None)]


def test_a_file_without_a_final_newline_reads_its_last_line(tmp_path: Path) -> None:
    path = tmp_path / "batches.jsonl"
    path.write_bytes(line(0) + line(1).rstrip(b"\n"))
    assert summary(path) == [(":1", ["r0"], None), (":2", ["r1"], None)]


def test_crlf_line_endings_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "batches.jsonl"
    path.write_bytes(line(0).replace(b"\n", b"\r\n") + line(1).replace(b"\n", b"\r\n"))
    assert summary(path) == [(":1", ["r0"], None), (":2", ["r1"], None)]


def test_an_empty_file_has_no_records(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_bytes(b"\n \n")
    assert summary(path) == []


def test_a_bad_line_in_the_middle_is_an_error_record_and_the_rest_still_decode(tmp_path: Path) -> None:
    path = tmp_path / "batches.jsonl"
    path.write_bytes(line(0) + b'{"events": [}\n' + line(2))
    assert summary(path) == [
        (":1", ["r0"], None),
        (":2", None, "malformed JSON: unexpected character '}' (byte 12)"),
        (":3", ["r2"], None),
    ]


def test_a_broken_first_line_of_a_json_lines_file_does_not_hide_the_other_lines(tmp_path: Path) -> None:
    path = tmp_path / "batches.jsonl"
    path.write_bytes(b'{"events": [}\n' + line(1) + line(2))
    assert summary(path) == [
        (":1", None, "malformed JSON: unexpected character '}' (byte 12)"),
        (":2", ["r1"], None),
        (":3", ["r2"], None),
    ]


def test_a_broken_pretty_printed_file_is_one_error_record(tmp_path: Path) -> None:
    path = tmp_path / "pretty.json"
    path.write_bytes(b'{\n  "events": [\n}\n')
    assert summary(path) == [("", None, "malformed JSON: unexpected character '}' (byte 16)")]


def test_a_wrong_type_on_a_line_is_pointed_at(tmp_path: Path) -> None:
    path = tmp_path / "batches.jsonl"
    path.write_bytes(
        line(0) + b'{"events": [{"event_type": "custom_event", "data": {"timestamp_unixtime_ms": "x"}}]}\n'
    )
    records = list(read_records(path))
    assert records[1].error is not None
    assert records[1].location == f"{path}:2"
    assert records[1].error.pointer == "/events/0/data/timestamp_unixtime_ms"


def test_a_line_nested_too_deeply_is_an_error_record(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_bytes(b'{"user_attributes": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}\n" + line(1))
    assert summary(path) == [(":1", None, "malformed JSON: nested too deeply"), (":2", ["r1"], None)]


def test_a_line_that_is_not_utf8_is_an_error_record(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"user_identities": {"email": "j\xe9@example.com"}}\n' + line(1))
    assert summary(path) == [(":1", None, "malformed JSON: not valid UTF-8 text"), (":2", ["r1"], None)]


def test_a_gzipped_json_lines_file_is_read_transparently(tmp_path: Path) -> None:
    path = tmp_path / "batches.jsonl.gz"
    path.write_bytes(gzip.compress(line(0) + line(1)))
    assert summary(path) == [(":1", ["r0"], None), (":2", ["r1"], None)]


def test_gzip_is_detected_by_content_not_by_name(tmp_path: Path) -> None:
    path = tmp_path / "batches.json"
    path.write_bytes(gzip.compress(json.dumps(batch_doc(source_request_id="r0"), indent=2).encode()))
    assert summary(path) == [("", ["r0"], None)]


def test_open_input_gives_the_same_bytes_for_plain_and_gzipped_files(tmp_path: Path) -> None:
    plain, packed = tmp_path / "a.json", tmp_path / "a.json.gz"
    plain.write_bytes(line(0))
    packed.write_bytes(gzip.compress(line(0)))
    with open_input(plain) as one, open_input(packed) as two:
        assert one.read() == two.read() == line(0)


def test_a_truncated_gzip_file_ends_with_an_error_record_after_the_lines_it_could_read(tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl.gz"
    packed = gzip.compress(b"".join(line(n) for n in range(2000)))
    path.write_bytes(packed[: len(packed) // 2])
    records = list(read_records(path))
    assert all(r.error is None for r in records[:-1])
    assert len(records) > 1
    last = records[-1]
    assert last.error is not None
    assert (last.location, last.error.pointer) == (str(path), "")
    assert last.error.message.startswith("cannot read the file: ")


def test_a_corrupt_gzip_file_is_an_error_record(tmp_path: Path) -> None:
    path = tmp_path / "bad.gz"
    path.write_bytes(b"\x1f\x8b" + b"not really gzip" * 4)
    [record] = list(read_records(path))
    assert record.error is not None
    assert record.error.message.startswith("cannot read the file: ")


def test_a_firehose_request_file_reads_as_one_firehose_batch(tmp_path: Path) -> None:
    path = tmp_path / "firehose.json"
    path.write_text(json.dumps({"type": "event_processing_request", "id": "fh-1", "events": []}, indent=2))
    [record] = list(read_records(path))
    assert record.batches is not None
    assert [(b.source, b.batch_key) for b in record.batches] == [("firehose", "fh-1")]


def test_a_file_starting_with_a_utf8_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"events": [], "user_identities": {"email": "a@example.com"}}\n')
    [record] = list(read_records(path))
    assert record.error is None
    assert record.batches is not None and record.batches[0].identities == {"email": "a@example.com"}


def test_count_lines_counts_the_lines_of_plain_and_gzipped_files_with_or_without_a_last_newline(
    tmp_path: Path,
) -> None:
    plain, unterminated, packed = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl.gz"
    plain.write_bytes(b"{}\n{}\n{}\n")
    unterminated.write_bytes(b"{}\n{}")
    packed.write_bytes(gzip.compress(b"{}\n" * 5))
    assert [count_lines(path, chunk=2) for path in (plain, unterminated, packed)] == [3, 2, 5]
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert count_lines(tmp_path / "empty.jsonl") == 0
