from __future__ import annotations

import asyncio

from mparticle_klaviyo.delivery.clock import FakeClock
from mparticle_klaviyo.delivery.lane import Lane
from mparticle_klaviyo.delivery.report import Tally
from mparticle_klaviyo.klaviyo.classify import Delivered
from mparticle_klaviyo.klaviyo.limits import RateLimit
from tests.delivery.helpers import RecordingTransport, client_for, event_request, run
from tests.delivery.scripted_server import ScriptedServer


def test_a_token_taken_while_a_429_closed_the_gate_is_not_spent_until_it_reopens() -> None:
    clock = FakeClock(start=0.0)
    lane = Lane(RateLimit(5, 20), clock)
    lane.limiter.try_acquire()  # the next token is a fraction of a second away

    async def scenario() -> list[float]:
        async with ScriptedServer() as server, client_for(server.url) as client:
            transport = RecordingTransport(client, clock)
            sending = asyncio.create_task(lane.send(transport, event_request(), Tally()))
            await asyncio.sleep(0)  # the send is now sleeping on the limiter
            lane.gate.close_for(10.0)  # as a sibling's 429 would
            assert isinstance(await sending, Delivered)
            return transport.sent_at

    (sent_at,) = run(scenario())
    assert sent_at >= lane.gate.blocked_until >= 10.0


def test_every_send_goes_through_the_limiter_and_is_tallied() -> None:
    clock = FakeClock(start=0.0)
    lane = Lane(RateLimit(5, 20), clock)
    tally = Tally()

    async def scenario() -> None:
        async with ScriptedServer() as server, client_for(server.url) as client:
            for n in range(3):
                await lane.send(client, event_request(n), tally)

    run(scenario())
    assert tally.sent == 3
    assert tally.limiter_wait_s > 0.0
