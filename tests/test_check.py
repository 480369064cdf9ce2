"""``mparticle-klaviyo check`` against the strict emulator: which key Klaviyo accepts, for what.

Each case runs the real command line in a subprocess against an emulator on a loopback port
whose keys and scopes the test sets. A key never appears in what the command prints.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from mparticle_klaviyo.klaviyo.emulator import EmulatorConfig
from mparticle_klaviyo.service.check import features, public_key_finding
from tests.service.e2e_helpers import (
    FAST_LIMITS,
    PRIVATE_KEY,
    PUBLIC_KEY,
    connection,
    free_port,
    run_async,
    run_cli,
    start_recording_emulator,
    write_service_config,
)

BULK_EVENTS = "POST /api/event-bulk-create-jobs"
BULK_SUBSCRIBE = "POST /api/profile-subscription-bulk-create-jobs"
ALL_SCOPES = frozenset({"events:write", "profiles:write", "lists:write", "subscriptions:write"})


def _check(tmp_path: Path, scopes: frozenset[str] | None, *args: str, **settings: Any) -> tuple[int, str, str]:
    """Run ``check`` for a connection whose private key the emulator knows with ``scopes`` (None: revoked)."""
    result: list[tuple[int, str, str]] = []

    async def scenario() -> None:
        keys = {} if scopes is None else {PRIVATE_KEY: scopes}
        emulator = await start_recording_emulator(EmulatorConfig(rate_limits=dict(FAST_LIMITS), private_keys=keys))
        config = write_service_config(tmp_path, emulator.url, free_port(), **settings)
        try:
            result.append(await run_cli("check", "--config", str(config), *args, cwd=tmp_path))
        finally:
            state = emulator.state()
            await emulator.close()
        assert state["events_recorded"] == 0 and state["subscriptions"] == [], "a check recorded data"

    run_async(scenario())
    code, out, err = result[0]
    assert PRIVATE_KEY not in out + err and PUBLIC_KEY not in out + err
    return code, out, err


def test_a_good_key_with_every_scope_it_needs_passes(tmp_path: Path) -> None:
    code, out, err = _check(tmp_path, ALL_SCOPES, private_api_key=PRIVATE_KEY)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "acme: public key: ok (6 letters and digits)",
        f"acme: private key for events ({BULK_EVENTS}, needs events:write): ok",
        f"acme: private key for consent subscriptions ({BULK_SUBSCRIBE}, "
        "needs lists:write, profiles:write, subscriptions:write): ok",
    ]


def test_a_revoked_key_is_refused_with_exit_code_1(tmp_path: Path) -> None:
    code, out, _ = _check(tmp_path, None, private_api_key=PRIVATE_KEY)
    assert code == 1
    refused = [line for line in out.splitlines() if "refused" in line]
    assert len(refused) == 2
    assert all("Klaviyo answered 401 authentication_failed" in line for line in refused), refused
    assert all(line.endswith("the key is revoked, mistyped or not a private key") for line in refused)


def test_a_missing_scope_is_named_for_the_feature_that_needs_it(tmp_path: Path) -> None:
    code, out, _ = _check(tmp_path, frozenset({"events:write"}), private_api_key=PRIVATE_KEY)
    assert code == 1
    events, subscriptions = out.splitlines()[1:]
    assert events.endswith(": ok")
    assert subscriptions.startswith(f"acme: private key for consent subscriptions ({BULK_SUBSCRIBE}")
    assert "refused: Klaviyo answered 403 permission_denied" in subscriptions
    assert "missing required scopes: lists:write, profiles:write, subscriptions:write" in subscriptions
    assert subscriptions.endswith("give the key the scopes lists:write, profiles:write, subscriptions:write")


def test_without_consents_only_the_events_scope_is_checked(tmp_path: Path) -> None:
    code, out, _ = _check(tmp_path, frozenset({"events:write"}), private_api_key=PRIVATE_KEY, consent_mapping={})
    assert code == 0
    assert [line.rsplit(": ", 1)[1] for line in out.splitlines()] == ["ok (6 letters and digits)", "ok"]


def test_an_unreachable_klaviyo_is_a_clear_message_and_exit_code_1(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, str, str]:
        url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        config = write_service_config(tmp_path, url, free_port(), private_api_key=PRIVATE_KEY)
        return await run_cli("check", "--config", str(config), "--timeout", "3", cwd=tmp_path)

    result: list[tuple[int, str, str]] = []

    async def go() -> None:
        result.append(await scenario())

    run_async(go())
    code, out, _ = result[0]
    assert code == 1
    unknown = [line for line in out.splitlines() if "unknown" in line]
    assert len(unknown) == 2
    assert all(
        re.search(r": unknown: no answer from Klaviyo at http://127\.0\.0\.1:\d+: connection_error", line)
        for line in unknown
    ), unknown
    assert PRIVATE_KEY not in out


def test_client_mode_checks_the_public_keys_format_without_asking_klaviyo(tmp_path: Path) -> None:
    code, out, _ = _check(tmp_path, ALL_SCOPES)
    assert (code, out.splitlines()) == (
        0,
        ["acme: public key: ok (6 letters and digits)", "acme: private key: none (client mode)"],
    )


@pytest.mark.parametrize(
    ("key", "said"),
    [
        ("pk_0123456789abcdef", "it is a private key (pk_...)"),
        ("XYZ98", "it is 5 characters"),
        ("XY-987", "6 characters"),
    ],
)
def test_a_public_key_of_the_wrong_shape_is_refused_without_showing_it(key: str, said: str) -> None:
    finding = public_key_finding(connection("http://127.0.0.1:9", public_api_key=key))
    assert finding.ok is False
    assert said in finding.text and key not in finding.text


def test_a_config_problem_is_exit_code_2(tmp_path: Path) -> None:
    async def go() -> None:
        config = write_service_config(tmp_path, "http://127.0.0.1:9", free_port())
        code, _, err = await run_cli("check", "--config", str(config), "--connection", "nope", cwd=tmp_path)
        assert code == 2 and "no connection 'nope'" in err
        missing = await run_cli("check", "--config", str(tmp_path / "absent.toml"), cwd=tmp_path)
        assert missing[0] == 2

    run_async(go())


def test_features_name_the_endpoints_a_private_key_is_used_for() -> None:
    url = "http://127.0.0.1:9"
    assert features(connection(url)) == {}
    assert features(connection(url, server=True)) == {"events": BULK_EVENTS, "consent subscriptions": BULK_SUBSCRIBE}
    assert features(connection(url, server=True, consent_mapping={"analytics": "web"})) == {"events": BULK_EVENTS}
