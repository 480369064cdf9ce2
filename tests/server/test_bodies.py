"""Request bodies within limits: refused before being read in full; bulk arrays split per batch."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import logging
import socket
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.server.bodies import split_bulk
from mparticle_klaviyo.server.errors import PayloadTooLargeError
from tests.service.live import Answer, LiveApp, basic, send
from tests.service.messages import batch

LIMIT = 128 * 1024


def test_split_bulk_returns_each_batch_as_its_own_json() -> None:
    parts = split_bulk(b' [ {"a": 1} , {"b": [2]} ] ', 100, LIMIT)
    assert [json.loads(part) for part in parts] == [{"a": 1}, {"b": [2]}]


def test_split_bulk_accepts_an_empty_array() -> None:
    assert split_bulk(b"[]", 100, LIMIT) == []


def test_split_bulk_refuses_more_batches_than_allowed() -> None:
    with pytest.raises(PayloadTooLargeError, match="3 batches"):
        split_bulk(b"[{}, {}, {}]", 2, LIMIT)


def test_split_bulk_points_at_the_batch_over_the_size_limit() -> None:
    raw = json.dumps([{"a": 1}, {"a": "x" * 2000}]).encode()
    with pytest.raises(PayloadTooLargeError) as error:
        split_bulk(raw, 100, 1024)
    assert error.value.pointer == "/1"


@pytest.mark.parametrize("raw", [b"{}", b"", b"null", b'"[]"'])
def test_split_bulk_refuses_anything_but_an_array(raw: bytes) -> None:
    with pytest.raises(InputError) as error:
        split_bulk(raw, 100, LIMIT)
    assert error.value.pointer == ""


@pytest.mark.parametrize("raw", [b"[{}", b"[{},]", b"[" * 100_000 + b"]" * 100_000])
def test_split_bulk_refuses_malformed_or_absurdly_nested_json(raw: bytes) -> None:
    with pytest.raises(InputError, match="malformed JSON"):
        split_bulk(raw, 100, LIMIT)


def header_only(url: str, path: str, length: int) -> Answer:
    """Announce a huge body and send none of it: the answer must not wait for the body."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    client = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        client.putrequest("POST", path)
        for name, value in {**basic(), "Content-Length": str(length), "Content-Type": "application/json"}.items():
            client.putheader(name, value)
        client.endheaders()
        response = client.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        client.close()


def test_a_declared_length_over_the_limit_is_413_before_the_body_is_read(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = header_only(app.url, "/v2/events", 10**9)
    assert (answer.status, answer.error["code"]) == (413, "PAYLOAD_TOO_LARGE")


def test_a_chunked_body_over_the_limit_is_413(tmp_path: Path) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"events": [], "user_attributes": {"a": "'
        for _ in range(40):
            yield b"x" * 4096
        yield b'"}}'

    with LiveApp(tmp_path) as app:
        host, port = app.url.removeprefix("http://").rsplit(":", 1)
        client = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            client.request("POST", "/v2/events", body=chunks(), headers=basic(), encode_chunked=True)
            response = client.getresponse()
            status = response.status
        finally:
            client.close()
        assert app.jobs() == []
    assert status == 413


def test_a_chunked_body_within_the_limit_is_accepted(tmp_path: Path) -> None:
    body = json.dumps(batch("chunked@example.com")).encode()
    with LiveApp(tmp_path) as app:
        host, port = app.url.removeprefix("http://").rsplit(":", 1)
        client = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            client.request(
                "POST", "/v2/events", body=iter([body[:10], body[10:]]), headers=basic(), encode_chunked=True
            )
            status = client.getresponse().status
        finally:
            client.close()
        assert len(app.jobs()) == 1
    assert status == 202


def test_a_small_gzip_that_inflates_past_the_limit_is_413(tmp_path: Path) -> None:
    bomb = gzip.compress(b'{"events": [], "x": "' + b"0" * 50_000_000 + b'"}')
    assert len(bomb) < LIMIT
    with LiveApp(tmp_path) as app:
        answer = send(app.url, "POST", "/v2/events", bomb, {**basic(), "Content-Encoding": "gzip"})
    assert (answer.status, answer.error["code"]) == (413, "PAYLOAD_TOO_LARGE")


def test_a_gzipped_bulk_is_decoded_once(tmp_path: Path) -> None:
    body = gzip.compress(json.dumps([batch("g@example.com")]).encode())
    with LiveApp(tmp_path) as app:
        answer = send(app.url, "POST", "/v2/bulkevents", body, {**basic(), "Content-Encoding": "gzip"})
        assert len(app.jobs()) == 1
    assert answer.status == 202


def test_a_bulk_body_over_100_full_batches_is_413(tmp_path: Path) -> None:
    with LiveApp(tmp_path, max_batch_bytes=1024, max_batches_per_request=2) as app:
        answer = app.post("/v2/bulkevents", b"[" + b" " * (3 * 1024 + 4096) + b"]", basic())
    assert answer.status == 413


def test_the_batch_size_limit_is_a_setting(tmp_path: Path) -> None:
    with LiveApp(tmp_path, max_batch_bytes=1024) as app:
        small = app.post("/v2/events", batch(), basic())
        large = app.post("/v2/events", batch(user_attributes={"a": "x" * 1024}), basic())
    assert (small.status, large.status) == (202, 413)


def test_a_deflate_body_is_accepted(tmp_path: Path) -> None:
    body = zlib.compress(json.dumps(batch("deflate@example.com")).encode())
    with LiveApp(tmp_path) as app:
        answer = send(app.url, "POST", "/v2/events", body, {**basic(), "Content-Encoding": "deflate"})
        assert len(app.jobs()) == 1
    assert answer.status == 202


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, br"])
def test_an_encoding_we_cannot_inflate_is_a_json_415(tmp_path: Path, encoding: str) -> None:
    # Seen: Content-Encoding: br got aiohttp's plain-text 400.
    with LiveApp(tmp_path) as app:
        answer = send(app.url, "POST", "/v2/events", b"\x0b\x02\x80{}\x03", {**basic(), "Content-Encoding": encoding})
        assert app.jobs() == []
    assert (answer.status, answer.error["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    assert encoding.split(",")[0] in answer.error["message"] or "not supported" in answer.error["message"]


def test_a_gzip_body_cut_short_is_400(tmp_path: Path) -> None:
    body = gzip.compress(json.dumps(batch()).encode())[:-12]
    with LiveApp(tmp_path) as app:
        answer = send(app.url, "POST", "/v2/events", body, {**basic(), "Content-Encoding": "gzip"})
    assert (answer.status, answer.error["message"]) == (400, "the compressed body ends early")


def test_a_body_that_stops_arriving_is_408_and_the_connection_closed(tmp_path: Path) -> None:
    with LiveApp(tmp_path, body_idle_timeout_s=0.3) as app, raw_socket(app.url) as sock:
        sock.sendall(head("/v2/events", 1000, basic()) + b'{"events": [')
        answer = sock.recv(65536)
        assert sock.recv(1) == b"", "the server should close the connection"
        assert app.jobs() == []
    assert answer.split(b" ")[1] == b"408" and b"REQUEST_TIMEOUT" in answer


def test_a_client_leaving_mid_body_is_counted_apart_and_logged_without_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Seen: an ERROR with a traceback, counted as a 503.
    caplog.set_level(logging.INFO)
    with LiveApp(tmp_path) as app:
        with raw_socket(app.url) as sock:
            sock.sendall(head("/v2/events", 100_000, basic()) + b'{"events": [')
        counted = app.metrics.registry.get_sample_value
        deadline = time.monotonic() + 5
        while counted("mpk_ingest_client_disconnects_total") != 1:
            assert time.monotonic() < deadline, "the disconnect should be counted"
            time.sleep(0.01)
        assert counted("mpk_requests_rejected_total", {"input": "v2", "status": "503"}) is None
        assert app.jobs() == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any(r.getMessage() == "client disconnected before its body was read" for r in caplog.records)


@contextlib.contextmanager
def raw_socket(url: str) -> Iterator[socket.socket]:
    """A plain TCP connection to the app, for requests no HTTP client would send."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)
    try:
        yield sock
    finally:
        sock.close()


def head(path: str, length: int, headers: dict[str, str]) -> bytes:
    """An HTTP/1.1 POST head announcing ``length`` body bytes."""
    lines = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Length: {length}", "Content-Type: application/json"]
    return ("\r\n".join(lines + [f"{k}: {v}" for k, v in headers.items()]) + "\r\n\r\n").encode()
