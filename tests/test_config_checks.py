"""The configuration is checked whole: every value, hints to fix each problem, no traceback ever."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mparticle_klaviyo.config import Config, load_config
from mparticle_klaviyo.delivery.clock import FakeClock
from mparticle_klaviyo.delivery.ratelimit import RateLimiter
from mparticle_klaviyo.errors import ConfigError
from mparticle_klaviyo.klaviyo.limits import RateLimit

SECRET = "SECRET_vR4k_never_shown"
ENV = "MPARTICLE_KLAVIYO_CONNECTIONS__"
EVENTS = '"POST /client/events"'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mparticle-klaviyo.toml"
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text), {})


def problems(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ or {})
    return [p.removeprefix(f"{path}: ") for p in caught.value.problems]


def connection(name: str = "a", **settings: str) -> str:
    lines = [f"[connections.{name}]", *(f"{key} = {value}" for key, value in settings.items())]
    return "\n".join(lines) + "\n"


def service(**settings: str) -> str:
    return "[service]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items())


# ------------------------------------------------------------------ hints: environment, spelling


def test_a_missing_required_key_names_the_environment_variable_that_would_set_it(tmp_path: Path) -> None:
    assert problems(tmp_path, connection("shop", list_id='"L"')) == [
        f"connections.shop.public_api_key: is required (or set {ENV}SHOP__PUBLIC_API_KEY)"
    ]


def test_the_environment_variable_can_then_supply_the_missing_key(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, connection("shop", list_id='"L"')), {f"{ENV}SHOP__PUBLIC_API_KEY": "K"})
    assert config.connection("shop").public_key.reveal() == "K"


def test_an_unknown_key_suggests_the_closest_known_one(tmp_path: Path) -> None:
    text = connection("shop", public_api_key='"k"', phone_identifer='"Mobile Number"')
    assert problems(tmp_path, text) == [
        "connections.shop.phone_identifer: is not a known setting (did you mean phone_identifier?)"
    ]


def test_an_unknown_key_with_nothing_close_gets_no_suggestion(tmp_path: Path) -> None:
    assert problems(tmp_path, connection(public_api_key='"k"', colour='"blue"')) == [
        "connections.a.colour: is not a known setting"
    ]


def test_an_unknown_service_key_suggests_the_closest_known_one(tmp_path: Path) -> None:
    text = service(max_concurency="8", zzz="1") + connection(public_api_key='"k"')
    assert problems(tmp_path, text) == [
        "service.max_concurency: is not a known setting (did you mean max_concurrency?)",
        "service.zzz: is not a known setting",
    ]


def test_a_value_error_is_shown_as_raised_whatever_pydantic_says_around_it() -> None:
    from mparticle_klaviyo.config_checks import error_message

    error = {"type": "value_error", "loc": ("x",), "msg": "Some other wording", "ctx": {"error": ValueError("bad")}}
    assert error_message(error) == "bad"
    error = {"type": "assertion_error", "loc": ("x",), "msg": "Assertion failed, bad", "ctx": {"error": "bad too"}}
    assert error_message(error) == "bad too"


def test_other_pydantic_errors_keep_pydantics_message_but_never_the_input(tmp_path: Path) -> None:
    found = problems(tmp_path, service(port=f'"{SECRET}"') + connection(public_api_key='"k"'))
    assert found == ["service.port: Input should be a valid integer"]


# ------------------------------------------------------------------ credentials


CREDENTIALS = ["public_api_key", "private_api_key", "firehose_token", "events_api_key", "webhook_authorization"]


@pytest.mark.parametrize("key", CREDENTIALS)
@pytest.mark.parametrize("value", ['""', '"  "', '"\\t"'])
def test_an_empty_or_blank_credential_is_a_problem(tmp_path: Path, key: str, value: str) -> None:
    settings = {"public_api_key": '"k"', key: value}
    if key == "events_api_key":
        settings["events_api_secret"] = '"s"'
    assert problems(tmp_path, connection(**settings)) == [f"connections.a.{key}: must not be empty"]


def test_a_blank_events_api_secret_is_a_problem(tmp_path: Path) -> None:
    text = connection(public_api_key='"k"', events_api_key='"key"', events_api_secret='" "')
    assert problems(tmp_path, text) == ["connections.a.events_api_secret: must not be empty"]


def test_an_events_api_key_without_its_secret_names_the_missing_secret(tmp_path: Path) -> None:
    assert problems(tmp_path, connection(public_api_key='"k"', events_api_key=f'"{SECRET}"')) == [
        f"connections.a.events_api_secret: is required with events_api_key (or set {ENV}A__EVENTS_API_SECRET)"
    ]


def test_an_events_api_secret_without_its_key_names_the_missing_key(tmp_path: Path) -> None:
    assert problems(tmp_path, connection(public_api_key='"k"', events_api_secret=f'"{SECRET}"')) == [
        f"connections.a.events_api_key: is required with events_api_secret (or set {ENV}A__EVENTS_API_KEY)"
    ]


@pytest.mark.parametrize("key", ["firehose_token", "events_api_key", "webhook_authorization"])
def test_two_connections_with_the_same_ingest_credential_are_a_problem_naming_both(tmp_path: Path, key: str) -> None:
    def table(name: str) -> str:
        settings = {"public_api_key": '"k"', key: f'"{SECRET}"'}
        if key == "events_api_key":
            settings["events_api_secret"] = f'"{name}-secret"'
        return connection(name, **settings)

    found = problems(tmp_path, table("shop") + table("app") + table("web"))
    assert found == [f"connections app, shop, web have the same {key}: give each connection its own"]
    assert SECRET not in " ".join(found)


def test_connections_with_different_ingest_credentials_are_fine(tmp_path: Path) -> None:
    text = connection("a", public_api_key='"k"', firehose_token='"t1"', webhook_authorization='"Bearer 1"')
    text += connection("b", public_api_key='"k"', firehose_token='"t2"', webhook_authorization='"Bearer 2"')
    assert sorted(load(tmp_path, text).connections) == ["a", "b"]


# ------------------------------------------------------------------ every value


@pytest.mark.parametrize("level", ['"debug"', '"INFO"', '"Warning"', '"error"', '"critical"'])
def test_log_level_is_any_standard_level_in_any_case(tmp_path: Path, level: str) -> None:
    config = load(tmp_path, service(log_level=level) + connection(public_api_key='"k"'))
    assert config.service.log_level == level.strip('"').lower()


@pytest.mark.parametrize("level", ['"bogus"', '""', '"warn "', "10"])
def test_log_level_outside_the_standard_levels_is_a_problem(tmp_path: Path, level: str) -> None:
    [found] = problems(tmp_path, service(log_level=level) + connection(public_api_key='"k"'))
    assert found.startswith("service.log_level: ")
    if level.startswith('"'):
        assert found == "service.log_level: must be one of debug, info, warning, error, critical"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("port", "65536"),
        ("port", "-1"),
        ("port", "80.5"),
        ("port", "true"),
        ("high_water_mark", "0"),
        ("max_batch_bytes", "0"),
        ("max_batches_per_request", "0"),
        ("max_batch_bytes", "1023"),
        ("max_attempts", "0"),
        ("max_concurrency", "0"),
        ("max_age_s", "0"),
        ("lease_s", "-1.0"),
        ("lease_s", "inf"),
        ("shutdown_timeout_s", "0"),
        ("dedup_window_s", "nan"),
        ("host", '""'),
        ("store", '" "'),
    ],
)
def test_a_service_setting_out_of_range_is_a_problem(tmp_path: Path, key: str, value: str) -> None:
    [found] = problems(tmp_path, service(**{key: value}) + connection(public_api_key='"k"'))
    assert found.startswith(f"service.{key}: ")
    assert "not a known setting" not in found


def test_every_service_setting_in_range_is_accepted(tmp_path: Path) -> None:
    text = service(port="65535", high_water_mark="1", lease_s="1", shutdown_timeout_s="0.5", max_attempts="1")
    found = load(tmp_path, text + connection(public_api_key='"k"')).service
    assert (found.port, found.high_water_mark, found.lease_s, found.shutdown_timeout_s) == (65535, 1, 1, 0.5)


def test_a_service_table_that_is_not_a_table_is_a_problem(tmp_path: Path) -> None:
    assert problems(tmp_path, 'service = "fast"\n' + connection(public_api_key='"k"')) == ["service: must be a table"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://a.klaviyo.com", "must start with http:// or https://"),
        ("a.klaviyo.com", "must start with http:// or https://"),
        ("https://", "must name a host, e.g. https://a.klaviyo.com"),
        ("http://:8080", "must name a host, e.g. https://a.klaviyo.com"),
        ("https://a.klaviyo.com:99999", "has an invalid port"),
        ("https://a.klaviyo.com/api", "must be the server's address only (scheme://host[:port]), without a path"),
        ("https://a.klaviyo.com/?x=1", "must not have a query or fragment"),
        ("https://a.klaviyo.com#top", "must not have a query or fragment"),
        (f"https://user:{SECRET}@a.klaviyo.com", "must not contain a user name or password"),
        ("https://a.kla viyo.com", "must not contain whitespace or control characters"),
    ],
)
def test_klaviyo_url_must_be_the_address_of_an_http_server(tmp_path: Path, url: str, message: str) -> None:
    assert problems(tmp_path, connection(public_api_key='"k"', klaviyo_url=f'"{url}"')) == [
        f"connections.a.klaviyo_url: {message}"
    ]


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://a.klaviyo.com/", "https://a.klaviyo.com"),
        ("http://127.0.0.1:8788", "http://127.0.0.1:8788"),
        ("HTTP://[::1]:8788/", "HTTP://[::1]:8788"),
    ],
)
def test_klaviyo_url_may_be_any_http_server_address(tmp_path: Path, url: str, kept: str) -> None:
    assert load(tmp_path, connection(public_api_key='"k"', klaviyo_url=f'"{url}"')).connection("a").klaviyo_url == kept


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ("[0, 5]", "each limit must be at least 1"),
        ("[-1, 5]", "each limit must be at least 1"),
        ("[5, 1]", "per_second must not exceed per_minute"),
        ("[1]", "must be [per_second, per_minute], two whole numbers"),
        ("[1, 2, 3]", "must be [per_second, per_minute], two whole numbers"),
        ('"fast"', "must be [per_second, per_minute], two whole numbers"),
        ("[1.5, 10]", "must be [per_second, per_minute], two whole numbers"),
        ("[true, 10]", "must be [per_second, per_minute], two whole numbers"),
    ],
)
def test_rate_limits_must_be_two_positive_whole_numbers_per_second_then_per_minute(
    tmp_path: Path, limits: str, message: str
) -> None:
    text = connection(public_api_key='"k"', rate_limits=f"{{ {EVENTS} = {limits} }}")
    assert problems(tmp_path, text) == [f'connections.a.rate_limits."POST /client/events": {message}']


def test_rate_limits_of_several_endpoints_are_each_reported(tmp_path: Path) -> None:
    limits = '{ "POST /client/event" = [1, 15], "POST /client/profiles" = [0, 1], "GET /x" = [1, 1] }'
    assert problems(tmp_path, connection(public_api_key='"k"', rate_limits=limits)) == [
        'connections.a.rate_limits."POST /client/event": is not a Klaviyo endpoint we send to'
        ' (did you mean "POST /client/events"?)',
        'connections.a.rate_limits."POST /client/profiles": each limit must be at least 1',
        'connections.a.rate_limits."GET /x": is not a Klaviyo endpoint we send to'
        ' (one of "POST /client/events", "POST /client/profiles", "POST /client/subscriptions",'
        ' "POST /client/event-bulk-create", "POST /api/events", "POST /api/event-bulk-create-jobs",'
        ' "POST /api/profile-import", "POST /api/profile-subscription-bulk-create-jobs",'
        ' "POST /api/profile-subscription-bulk-delete-jobs", "POST /api/data-privacy-deletion-jobs")',
    ]


def test_rate_limits_from_the_environment_are_checked_the_same_way(tmp_path: Path) -> None:
    environ = {f"{ENV}A__RATE_LIMITS": '{"POST /client/events": [5, 1]}'}
    assert problems(tmp_path, connection(public_api_key='"k"'), environ) == [
        'connections.a.rate_limits."POST /client/events": per_second must not exceed per_minute'
    ]


SMALL_LIMITS = {
    "XS": RateLimit(1, 15),
    "S": RateLimit(3, 60),
    "M": RateLimit(10, 150),
    "L": RateLimit(75, 700),
    "XL": RateLimit(350, 3500),
    "1/s,1/min": RateLimit(1, 1),
    "1/s,2/min": RateLimit(1, 2),
    "2/s,3/min": RateLimit(2, 3),
}


@pytest.mark.parametrize("limit", list(SMALL_LIMITS.values()), ids=list(SMALL_LIMITS))
def test_every_klaviyo_tier_and_small_odd_limits_configure_and_build_a_limiter(
    tmp_path: Path, limit: RateLimit
) -> None:
    pair = f"[{limit.burst_per_second}, {limit.steady_per_minute}]"
    limits = f'{{ {EVENTS} = {pair}, "POST /client/event-bulk-create" = {pair} }}'
    text = connection(public_api_key='"k"', rate_limits=limits)
    configured = load(tmp_path, text).connection("a").rate_limits
    assert configured["POST /client/events"] == configured["POST /client/event-bulk-create"] == limit
    limiter = RateLimiter(configured["POST /client/events"], FakeClock())
    assert limiter.try_acquire() == 0.0


# ------------------------------------------------------------------ all at once, through the CLI


def test_every_problem_of_the_file_is_reported_at_once(tmp_path: Path) -> None:
    text = (
        service(log_level='"bogus"', port="70000", max_concurency="8")
        + connection("a", list_id='"L"', phone_identifer='"Mobile Number"')
        + connection("b", public_api_key='"k"', firehose_token='" "', rate_limits=f"{{ {EVENTS} = [5, 1] }}")
        + connection("c", public_api_key='"k"', events_api_key=f'"{SECRET}"', events_api_secret='"s"')
        + connection("d", public_api_key='"k"', events_api_key=f'"{SECRET}"', klaviyo_url='"https://"')
    )
    found = problems(tmp_path, text)
    assert sorted(found) == sorted(
        [
            "service.port: Input should be less than or equal to 65535",
            "service.max_concurency: is not a known setting (did you mean max_concurrency?)",
            "service.log_level: must be one of debug, info, warning, error, critical",
            f"connections.a.public_api_key: is required (or set {ENV}A__PUBLIC_API_KEY)",
            "connections.a.phone_identifer: is not a known setting (did you mean phone_identifier?)",
            "connections.b.firehose_token: must not be empty",
            'connections.b.rate_limits."POST /client/events": per_second must not exceed per_minute',
            "connections.d.klaviyo_url: must name a host, e.g. https://a.klaviyo.com",
            f"connections.d.events_api_secret: is required with events_api_key (or set {ENV}D__EVENTS_API_SECRET)",
            "connections c, d have the same events_api_key: give each connection its own",
        ]
    )
    assert SECRET not in " ".join(found)


def serve(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    """``python -m mparticle_klaviyo serve --config`` on ``text``; the environment adds no settings."""
    path = write(tmp_path, text)
    environ = {key: value for key, value in os.environ.items() if not key.startswith("MPARTICLE_KLAVIYO_")}
    return subprocess.run(
        [sys.executable, "-m", "mparticle_klaviyo", "serve", "--config", str(path)],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


SERVE = service(host='"127.0.0.1"', port="0", store='"jobs.sqlite3"')


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            SERVE + 'log_level = "bogus"\n' + connection(public_api_key='"k"'),
            ["service.log_level: must be one of debug, info, warning, error, critical"],
        ),
        (
            SERVE + connection(public_api_key='"k"', rate_limits=f'{{ {EVENTS} = [0, 5], {EVENTS[:-1]}x" = [5, 1] }}'),
            [
                'connections.a.rate_limits."POST /client/events": each limit must be at least 1',
                'connections.a.rate_limits."POST /client/eventsx": is not a Klaviyo endpoint we send to'
                ' (did you mean "POST /client/events"?)',
                'connections.a.rate_limits."POST /client/eventsx": per_second must not exceed per_minute',
            ],
        ),
        (
            SERVE + connection(public_api_key='"k"', external_id_identity_type='"Custmer ID"'),
            [
                "connections.a.external_id_identity_type: must be one of Customer ID, Other, Other2 ... Other10,"
                " MPID (did you mean Customer ID?)"
            ],
        ),
    ],
    ids=["bogus-log-level", "impossible-rate-limits", "misspelt-external-id-identity"],
)
def test_serve_with_a_bad_config_prints_config_error_lines_and_exits_2(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    result = serve(tmp_path, text)
    path = tmp_path / "mparticle-klaviyo.toml"
    assert (result.returncode, result.stdout) == (2, "")
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"config error: {path}: {line}" for line in expected]


@pytest.mark.parametrize(("value", "expected"), [('"auto"', "auto"), ("0", 0), ("3", 3)])
def test_ingest_workers_is_auto_or_a_count(tmp_path: Path, value: str, expected: object) -> None:
    config = load(tmp_path, service(ingest_workers=value) + connection(public_api_key='"k"'))
    assert config.service.ingest_workers == expected


@pytest.mark.parametrize("value", ['"many"', "-1", "65", "2.0", "true", '"2"'])
def test_ingest_workers_outside_auto_and_0_to_64_is_one_problem_naming_the_key(tmp_path: Path, value: str) -> None:
    [found] = problems(tmp_path, service(ingest_workers=value) + connection(public_api_key='"k"'))
    assert found.startswith("service.ingest_workers"), found
