"""``mparticle-klaviyo map`` run as a process: JSON lines out, exit 1 on bad input, 2 on bad config."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import skip_or_fail
from tests.mapping.builders import EMAIL, PHONE, T0_ISO, batch_doc, commerce, custom, encode, ev, gdpr, product

PUBLIC = "PUBKEY_cli_Qm4t9_never_shown"
PRIVATE = "pk_PRIVKEY_cli_Hw8v1_never_shown"
FIREHOSE_KEY = "FHKEY_cli_Zr2p6_never_shown"
PHONE_CHOICES = "Mobile Number, Phone Number 2, Phone Number 3"


class Run:
    def __init__(self, done: subprocess.CompletedProcess[str]) -> None:
        self.code = done.returncode
        self.stdout = done.stdout
        self.stderr = done.stderr
        self.lines: list[dict[str, Any]] = [json.loads(line) for line in done.stdout.splitlines()]

    def kinds(self) -> list[str]:
        return [str(line["kind"]) for line in self.lines]


def run(*args: str | Path, env: dict[str, str] | None = None) -> Run:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MPARTICLE_KLAVIYO_")}
    environ.update(env or {})
    done = subprocess.run(
        [sys.executable, "-m", "mparticle_klaviyo", "map", *map(str, args)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
    )
    return Run(done)


def config(tmp_path: Path, body: str = "", name: str = "main", private: bool = False) -> Path:
    path = tmp_path / "config.toml"
    key = f'private_api_key = "{PRIVATE}"\n' if private else ""
    path.write_text(f'[connections.{name}]\npublic_api_key = "{PUBLIC}"\n{key}{body}')
    return path


def batch_file(tmp_path: Path, *docs: dict[str, Any], name: str = "batches.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(b"".join(encode(doc) + b"\n" for doc in docs))
    return path


def assert_no_keys(result: Run) -> None:
    for key in (PUBLIC, PRIVATE, FIREHOSE_KEY):
        assert key not in result.stdout
        assert key not in result.stderr


def test_a_batch_prints_one_client_request_per_event(tmp_path: Path) -> None:
    doc = batch_doc(
        custom("Signed Up", source_message_id="m-1", custom_attributes={"plan": "pro"}), ev("session_start")
    )
    result = run(batch_file(tmp_path, doc), "--config", config(tmp_path))
    assert (result.code, result.kinds()) == (0, ["request", "request"])
    assert result.lines[0] == {
        "kind": "request",
        "method": "POST",
        "path": "/client/events?company_id=***",
        "body": {
            "data": {
                "type": "event",
                "attributes": {
                    "properties": {"plan": "pro"},
                    "metric": {"data": {"type": "metric", "attributes": {"name": "Signed Up"}}},
                    "unique_id": "m-1",
                    "time": T0_ISO,
                    "profile": {"data": {"type": "profile", "attributes": {"email": EMAIL}}},
                },
            }
        },
    }
    assert_no_keys(result)


def test_dropped_events_are_printed_with_batch_event_and_reason(tmp_path: Path) -> None:
    docs = [batch_doc(custom("A")), batch_doc(custom("B"), ev("crash_report"), identities={"customer_id": "c"})]
    result = run(batch_file(tmp_path, *docs), "--config", config(tmp_path))
    assert result.code == 0
    assert result.lines[1:] == [
        {"batch": 1, "kind": "dropped", "reason": "no_email_or_phone", "event": 0},
        {"batch": 1, "kind": "dropped", "reason": "no_email_or_phone", "event": 1},
    ]


def test_warnings_and_detailed_drops_are_printed(tmp_path: Path) -> None:
    doc = batch_doc(ev("crash_report"), custom("A"), identities={"email": EMAIL, "mobile_number": "not a phone"})
    result = run(batch_file(tmp_path, doc), "--config", config(tmp_path))
    assert result.lines[1:] == [
        {
            "batch": 0,
            "kind": "warning",
            "reason": "invalid_phone",
            "detail": "identity 'mobile_number' is not a phone number",
        },
        {"batch": 0, "kind": "dropped", "reason": "unsupported_event_type", "event": 0, "detail": "crash_report"},
    ]


def test_consent_prints_a_subscription_request_before_the_events(tmp_path: Path) -> None:
    doc = batch_doc(
        custom("A"), identities={"email": EMAIL, "mobile_number": PHONE}, consent=gdpr(email_marketing=True)
    )
    body = 'consent_mapping = { email_marketing = "email" }\nlist_id = "Y6nRLr"\n'
    result = run(batch_file(tmp_path, doc), "--config", config(tmp_path, body))
    assert [line.get("path") for line in result.lines] == [
        "/client/subscriptions?company_id=***",
        "/client/events?company_id=***",
    ]
    assert result.lines[0]["body"]["data"]["relationships"] == {"list": {"data": {"type": "list", "id": "Y6nRLr"}}}


def test_server_mode_prints_one_bulk_job_per_batch_without_a_company_id(tmp_path: Path) -> None:
    purchase = commerce(product_action={"action": "purchase", "products": [product("S1", 5.0), product("S2", 2.0)]})
    result = run(batch_file(tmp_path, batch_doc(custom("A"), purchase)), "--config", config(tmp_path, private=True))
    assert (result.code, result.kinds()) == (0, ["request"])
    assert result.lines[0]["path"] == "/api/event-bulk-create-jobs"
    [entry] = result.lines[0]["body"]["data"]["attributes"]["events-bulk-create"]["data"]
    names = [e["attributes"]["metric"]["data"]["attributes"]["name"] for e in entry["attributes"]["events"]["data"]]
    assert names == ["A", "Placed Order", "Ordered Product", "Ordered Product"]
    assert_no_keys(result)


def test_server_mode_consent_is_a_bulk_subscription_job(tmp_path: Path) -> None:
    doc = batch_doc(custom("A"), identities={"email": EMAIL}, consent=gdpr(email_marketing=True))
    body = 'consent_mapping = { email_marketing = "email" }\n'
    result = run(batch_file(tmp_path, doc), "--config", config(tmp_path, body, private=True))
    assert [line["path"] for line in result.lines] == [
        "/api/profile-subscription-bulk-create-jobs",
        "/api/event-bulk-create-jobs",
    ]
    assert result.lines[0]["body"]["data"]["attributes"]["profiles"]["data"] == [
        {
            "type": "profile",
            "attributes": {"email": EMAIL, "subscriptions": {"email": {"marketing": {"consent": "SUBSCRIBED"}}}},
        }
    ]


def test_malformed_input_prints_an_error_line_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(b'{"events": [}\n')
    result = run(path, "--config", config(tmp_path))
    assert result.code == 1
    assert result.lines == [
        {
            "kind": "error",
            "location": str(path),
            "pointer": "",
            "message": "malformed JSON: unexpected character '}' (byte 12)",
        }
    ]


def test_a_wrong_type_prints_the_pointer_to_the_field(tmp_path: Path) -> None:
    bad = {"events": [{"event_type": "custom_event", "data": {"timestamp_unixtime_ms": "yesterday"}}]}
    path = batch_file(tmp_path, batch_doc(custom("A")), bad)
    result = run(path, "--config", config(tmp_path))
    assert (result.code, result.kinds()) == (1, ["request", "error"])
    assert result.lines[1] == {
        "kind": "error",
        "location": f"{path}:2",
        "pointer": "/events/0/data/timestamp_unixtime_ms",
        "message": "Expected int | float | null, got str",
    }


def test_a_non_event_firehose_message_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "registration.json"
    path.write_text(json.dumps({"type": "module_registration_request", "id": "x", "timestamp_ms": 1}))
    result = run(path, "--config", config(tmp_path))
    assert result.code == 1
    assert (result.lines[0]["pointer"], result.lines[0]["message"]) == (
        "/type",
        "'module_registration_request' is not an event message (expected 'event_processing_request' or a batch)",
    )


def test_a_gzipped_bulk_file_is_mapped(tmp_path: Path) -> None:
    path = tmp_path / "export.json.gz"
    path.write_bytes(gzip.compress(encode([batch_doc(custom("A")), batch_doc(custom("B"))])))
    result = run(path, "--config", config(tmp_path))
    names = [line["body"]["data"]["attributes"]["metric"]["data"]["attributes"]["name"] for line in result.lines]
    assert (result.code, names) == (0, ["A", "B"])


def test_batch_numbers_run_on_across_files(tmp_path: Path) -> None:
    first = batch_file(tmp_path, batch_doc(custom("A")), name="one.jsonl")
    second = batch_file(tmp_path, batch_doc(custom("B"), identities={}), name="two.jsonl")
    result = run(first, second, "--config", config(tmp_path))
    assert result.lines[1] == {"batch": 1, "kind": "dropped", "reason": "no_email_or_phone", "event": 0}


def test_firehose_settings_override_the_configured_connection(tmp_path: Path) -> None:
    request = {
        "type": "event_processing_request",
        "id": "fh-1",
        "account": {
            "account_id": 1,
            "account_settings": {"publicApiKey": FIREHOSE_KEY, "externalEmailIdentityType": "Other10"},
        },
        "user_identities": [
            {"type": "email", "encoding": "raw", "value": "primary@example.com"},
            {"type": "other10", "encoding": "raw", "value": "other10@example.com"},
        ],
        "runtime_environment": {"type": "android"},
        "events": [{"type": "screen_view", "id": "ev-1", "timestamp_ms": 1700000000000, "screen_name": "Home"}],
    }
    path = tmp_path / "firehose.json"
    path.write_text(json.dumps(request, indent=2))
    result = run(path, "--config", config(tmp_path))
    assert (result.code, result.kinds()) == (0, ["request"])
    attributes = result.lines[0]["body"]["data"]["attributes"]
    assert attributes["profile"]["data"]["attributes"] == {"email": "other10@example.com"}
    assert attributes["unique_id"] == "ev-1"
    assert_no_keys(result)


def test_a_bad_firehose_setting_is_an_error_line(tmp_path: Path) -> None:
    request = {
        "type": "event_processing_request",
        "id": "fh-1",
        "account": {"account_settings": {"phoneIdentifier": "Fax"}},
    }
    path = tmp_path / "firehose.json"
    path.write_text(json.dumps(request))
    result = run(path, "--config", config(tmp_path))
    assert result.code == 1
    assert (result.lines[0]["pointer"], result.lines[0]["message"]) == (
        "/account/account_settings/phoneIdentifier",
        "must be one of Mobile Number, Phone Number 2, Phone Number 3",
    )


def test_config_problems_exit_2_with_one_line_each_and_no_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[connections.main]\nprivate_api_key = "{PRIVATE}"\nrevision = "{PUBLIC}"\nphone_identifier = "Fax"\n'
    )
    result = run(batch_file(tmp_path, batch_doc(custom())), "--config", path)
    assert (result.code, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [
        f"config error: {path}: connections.main.public_api_key: is required"
        " (or set MPARTICLE_KLAVIYO_CONNECTIONS__MAIN__PUBLIC_API_KEY)",
        f"config error: {path}: connections.main.phone_identifier: must be one of {PHONE_CHOICES}",
        f"config error: {path}: connections.main.revision: must look like YYYY-MM-DD, e.g. 2026-07-15",
    ]
    assert_no_keys(result)


def test_a_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = run(batch_file(tmp_path, batch_doc()), "--config", tmp_path / "absent.toml")
    assert result.code == 2
    assert result.stderr.strip() == f"config error: {tmp_path / 'absent.toml'}: file not found (pass --config FILE)"


def test_a_missing_input_file_exits_2(tmp_path: Path) -> None:
    result = run(tmp_path / "absent.json", "--config", config(tmp_path))
    assert (result.code, result.stdout) == (2, "")
    assert result.stderr.strip() == f"error: no such file: {tmp_path / 'absent.json'}"


def test_the_connection_is_chosen_by_name(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[connections.a]\npublic_api_key = "{PUBLIC}"\n'
        f'[connections.b]\npublic_api_key = "{PUBLIC}"\nprivate_api_key = "{PRIVATE}"\n'
    )
    batches = batch_file(tmp_path, batch_doc(custom()))
    assert run(batches, "--config", path, "--connection", "b").lines[0]["path"] == "/api/event-bulk-create-jobs"
    missing = run(batches, "--config", path)
    assert missing.code == 2
    assert "choose a connection with --connection (configured: a, b)" in missing.stderr


def test_environment_overrides_reach_the_mapping(tmp_path: Path) -> None:
    env = {"MPARTICLE_KLAVIYO_CONNECTIONS__MAIN__METRIC_NAMES": '{"Session Start": "App Opened"}'}
    result = run(batch_file(tmp_path, batch_doc(ev("session_start"))), "--config", config(tmp_path), env=env)
    assert result.lines[0]["body"]["data"]["attributes"]["metric"]["data"]["attributes"]["name"] == "App Opened"


def test_the_installed_console_script_runs_map(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "mparticle-klaviyo"
    if not script.exists():
        # Outside the project's venv the script may be missing; `make test` (and so CI) installs it.
        skip_or_fail(f"{script} is not installed")
    done = subprocess.run(
        [str(script), "map", str(batch_file(tmp_path, batch_doc(custom("A")))), "--config", str(config(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert json.loads(done.stdout.splitlines()[0])["path"] == "/client/events?company_id=***"


def test_a_commerce_field_shadowing_an_event_attribute_prints_a_warning_line(tmp_path: Path) -> None:
    action = {"action": "purchase", "transaction_id": "T-1", "products": [{"id": "S1", "name": "product uno"}]}
    doc = batch_doc(commerce(product_action=action, custom_attributes={"ProductName": "FROM_EVENT"}))
    result = run(batch_file(tmp_path, doc), "--config", config(tmp_path))
    assert (result.code, result.kinds()) == (0, ["request", "request", "warning"])
    ordered = result.lines[1]["body"]["data"]["attributes"]["properties"]
    assert ordered["ProductName"] == "product uno"
    assert result.lines[2] == {
        "batch": 0,
        "kind": "warning",
        "reason": "attribute_shadowed",
        "event": 0,
        "detail": "event attribute 'ProductName' is shadowed by the commerce field of that name",
    }


def test_a_near_spelling_of_a_reserved_event_key_prints_a_warning_line(tmp_path: Path) -> None:
    doc = batch_doc(custom("A", custom_attributes={"$eventid": "e-1", "$Value": 3}))
    result = run(batch_file(tmp_path, doc), "--config", config(tmp_path))
    attributes = result.lines[0]["body"]["data"]["attributes"]
    assert (attributes["value"], attributes["properties"]) == (3, {"$eventid": "e-1"})
    assert result.lines[1:] == [
        {
            "batch": 0,
            "kind": "warning",
            "reason": "near_reserved_key",
            "event": 0,
            "detail": "event attribute '$eventid' looks like '$event_id' but is not it; sent as a property",
        }
    ]


def test_a_ccpa_opt_out_is_a_profile_property_and_never_a_subscription(tmp_path: Path) -> None:
    consent = {"ccpa": {"data_sale_opt_out": {"consented": True}}}
    doc = batch_doc(custom("A"), identities={"email": EMAIL, "mobile_number": PHONE}, consent=consent)
    body = 'consent_mapping = { email_marketing = "email" }\nlist_id = "Y6nRLr"\n'
    result = run(batch_file(tmp_path, doc), "--config", config(tmp_path, body))
    assert (result.code, [line["path"] for line in result.lines]) == (0, ["/client/events?company_id=***"])
    profile = result.lines[0]["body"]["data"]["attributes"]["profile"]["data"]["attributes"]
    assert profile["properties"] == {"data_sale_opt_out": True}


def test_a_consent_mapping_of_the_ccpa_opt_out_is_a_config_error(tmp_path: Path) -> None:
    body = 'consent_mapping = { data_sale_opt_out = "directmail" }\n'
    result = run(batch_file(tmp_path, batch_doc(custom())), "--config", config(tmp_path, body))
    assert (result.code, result.stdout) == (2, "")
    assert "connections.main.consent_mapping: purpose 'data_sale_opt_out' is CCPA's opt-out" in result.stderr
