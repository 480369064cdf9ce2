"""Follow-up requests: ``on_result`` may return requests that the same run delivers."""

from __future__ import annotations

from mparticle_klaviyo.delivery import Result
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest
from tests.delivery.helpers import client_for, event_request, run
from tests.delivery.scripted_server import ScriptedServer, Step, error_body
from tests.delivery.test_sender import sender

POINTER = "/data/attributes/profile/data/attributes/email"


def test_a_refusal_carries_klaviyos_pointer_and_a_follow_up_is_delivered_in_the_same_run() -> None:
    seen: list[tuple[str, Result]] = []

    def on_result(request: KlaviyoRequest, result: Result) -> list[KlaviyoRequest]:
        seen.append((request.body["data"]["attributes"]["unique_id"], result))
        return [event_request(99)] if not result.ok else []

    async def scenario() -> int:
        refusal = Step(400, body=error_body(400, "invalid", "Invalid email address.", POINTER))
        async with ScriptedServer([refusal]) as server, client_for(server.url) as client:
            report = await sender(client).deliver([event_request(1)], on_result)
            assert (report.requests, report.delivered, report.failed) == (2, 1, {"http_400": 1})
            return len(server.received)

    assert run(scenario()) == 2
    [(first, refused), (second, delivered)] = seen
    assert (first, refused.reason, refused.pointer) == ("u1", "http_400", POINTER)
    assert (second, delivered.ok, delivered.pointer) == ("u99", True, None)
