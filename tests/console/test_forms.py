"""The Origin check of console POSTs."""

from __future__ import annotations

from aiohttp.test_utils import make_mocked_request

from mparticle_klaviyo.console.forms import same_origin


def test_a_post_from_this_host_passes_and_one_from_elsewhere_or_null_does_not() -> None:
    def post(origin: str | None) -> bool:
        headers = {"Host": "127.0.0.1:8080", **({"Origin": origin} if origin else {})}
        return same_origin(make_mocked_request("POST", "/console/logout", headers=headers))

    assert post("http://127.0.0.1:8080")
    assert post(None)
    assert not post("https://evil.example")
    assert not post("null")
