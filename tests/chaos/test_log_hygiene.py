"""What a hostile request makes the HTTP library log never carries its content (issue 8, finding 6)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.chaos.rig import TOKEN, ServeRig


async def raw_exchange(address: tuple[str, int], data: bytes) -> bytes:
    """Send raw bytes, read the answer until the server closes (or 5 s)."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()


def test_an_over_long_authorization_header_is_refused_and_never_logged(tmp_path: Path) -> None:
    secret_line = f"Authorization: Token {TOKEN}{'x' * 9000}"
    request = f"POST /firehose HTTP/1.1\r\nHost: 127.0.0.1\r\n{secret_line}\r\nContent-Length: 2\r\n\r\n{{}}"

    async def scenario() -> tuple[bytes, str]:
        async with ServeRig(tmp_path) as rig:
            answer = await raw_exchange(rig.address, request.encode())
            assert rig.served is not None
            await rig.served.stop()
            return answer, rig.served.stderr.decode(errors="replace")

    answer, stderr = asyncio.run(scenario())
    assert answer.split(b" ")[1] == b"400", answer[:200]
    assert TOKEN not in stderr
    assert "xxxxxxxx" not in stderr
    refusals = [line for line in stderr.splitlines() if '"bad HTTP request"' in line]
    assert refusals, stderr[-2000:]
    assert '"length":' in refusals[0] and '"error":' in refusals[0]
