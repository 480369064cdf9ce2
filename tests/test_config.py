"""Configuration: TOML [connections.NAME] tables plus environment overrides; one message per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from mparticle_klaviyo.config import DEFAULT_KLAVIYO_URL, Config, ConnectionSettings, load_config
from mparticle_klaviyo.errors import ConfigError
from mparticle_klaviyo.klaviyo.limits import DEFAULT_REVISION

PUBLIC = "PUBKEY_zq8Kx3_never_shown"
PRIVATE = "pk_PRIVKEY_y7Rw2_never_shown"
ENV = "MPARTICLE_KLAVIYO_CONNECTIONS__"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mparticle-klaviyo.toml"
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, text), environ or {})


def problems(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ or {})
    prefix = f"{path}: "
    return [p.removeprefix(prefix) for p in caught.value.problems]


def test_a_connection_needs_only_a_public_key(tmp_path: Path) -> None:
    connection = load(tmp_path, f'[connections.main]\npublic_api_key = "{PUBLIC}"\n').connection(None)
    assert (connection.name, connection.public_key.reveal(), connection.private_key) == ("main", PUBLIC, None)
    assert (connection.revision, connection.klaviyo_url, connection.server_mode) == (
        DEFAULT_REVISION,
        DEFAULT_KLAVIYO_URL,
        False,
    )
    assert (connection.mapping.email_identity, connection.mapping.phone_identity) == ("email", "mobile_number")
    assert len(connection.mapping.supported_platforms) == 10


def test_every_setting_reaches_the_connection(tmp_path: Path) -> None:
    text = f"""
[connections.shop]
public_api_key = "{PUBLIC}"
private_api_key = "{PRIVATE}"
external_email_identity_type = "Other10"
phone_identifier = "Phone Number 2"
consent_mapping = {{ Email_Marketing = "email", sms_marketing = "SMS" }}
property_mapping = {{ photo = "$image", town = "location.city" }}
list_id = "Y6nRLr"
revision = "2025-10-15"
default_phone_region = "United Kingdom"
metric_names = {{ "Screen View" = "Viewed Screen" }}
supported_platforms = ["iOS", "Desktop"]
klaviyo_url = "http://127.0.0.1:8080/"
"""
    connection = load(tmp_path, text).connection("shop")
    mapping = connection.mapping
    assert (mapping.email_identity, mapping.phone_identity) == ("other10", "phone_number_2")
    assert mapping.consent_mapping == {"email_marketing": "email", "sms_marketing": "sms"}
    assert mapping.property_mapping == {"photo": ("image",), "town": ("location", "city")}
    assert (mapping.list_id, mapping.default_phone_region, mapping.metric_names) == (
        "Y6nRLr",
        "GB",
        {"Screen View": "Viewed Screen"},
    )
    assert mapping.supported_platforms == {"ios", "desktop"}
    assert (connection.revision, connection.klaviyo_url) == ("2025-10-15", "http://127.0.0.1:8080")
    assert (connection.private_key is not None and connection.private_key.reveal(), connection.server_mode) == (
        PRIVATE,
        True,
    )
    assert mapping.server_mode is True


@pytest.mark.parametrize(
    ("email", "phone", "keys"),
    [
        ("email", "mobile_number", ("email", "mobile_number")),
        ("other_id_3", "phone_number_3", ("other3", "phone_number_3")),
        ("Other", "Mobile Number", ("other", "mobile_number")),
    ],
)
def test_identity_settings_accept_labels_and_wire_names(
    tmp_path: Path, email: str, phone: str, keys: tuple[str, str]
) -> None:
    text = (
        '[connections.a]\npublic_api_key = "k"\n'
        f'external_email_identity_type = "{email}"\nphone_identifier = "{phone}"\n'
    )
    mapping = load(tmp_path, text).connection("a").mapping
    assert (mapping.email_identity, mapping.phone_identity) == keys


def test_mappings_may_use_mparticles_custom_field_json(tmp_path: Path) -> None:
    text = """[connections.a]
public_api_key = "k"
consent_mapping = '[{"jsmap":null,"map":"email_marketing","maptype":"ConsentPurposes","value":"email"}]'
property_mapping = '[{"jsmap":null,"map":"photo","maptype":"UserAttributeClass.Name","value":"$image"}]'
"""
    mapping = load(tmp_path, text).connection("a").mapping
    assert (mapping.consent_mapping, mapping.property_mapping) == ({"email_marketing": "email"}, {"photo": ("image",)})


def test_a_missing_public_key_is_one_problem(tmp_path: Path) -> None:
    assert problems(tmp_path, '[connections.a]\nlist_id = "L"\n') == [
        f"connections.a.public_api_key: is required (or set {ENV}A__PUBLIC_API_KEY)"
    ]


def test_every_problem_gets_its_own_message(tmp_path: Path) -> None:
    text = """[connections.a]
public_api_key = " "
external_email_identity_type = "Fax"
phone_identifier = "Pager"
consent_mapping = { p = "carrier-pigeon" }
property_mapping = { photo = "$avatar" }
revision = "soon"
default_phone_region = "Atlantis"
supported_platforms = 5
metric_names = 3
klaviyo_url = "ftp://example.com"
colour = "blue"
"""
    found = problems(tmp_path, text)
    assert found[:3] == [
        "connections.a.public_api_key: must not be empty",
        "connections.a.external_email_identity_type: must be one of Email, Other, Other2 ... Other10",
        "connections.a.phone_identifier: must be one of Mobile Number, Phone Number 2, Phone Number 3",
    ]
    assert (
        found[3]
        == "connections.a.consent_mapping: purpose 'p': channel must be one of email, sms, mobile, web, directmail"
    )
    assert found[4].startswith("connections.a.property_mapping: attribute 'photo': '$avatar' is not a Klaviyo reserved")
    assert found[5:] == [
        "connections.a.revision: must look like YYYY-MM-DD, e.g. 2026-07-15",
        "connections.a.default_phone_region: must be an ISO 3166 country code or name, e.g. US",
        "connections.a.metric_names: Input should be a valid dictionary",
        "connections.a.supported_platforms: must be a list of platform names",
        "connections.a.klaviyo_url: must start with http:// or https://",
        "connections.a.colour: is not a known setting",
    ]


def test_problems_of_several_connections_are_all_reported(tmp_path: Path) -> None:
    text = '[connections.a]\nlist_id = "L"\n[connections.b]\npublic_api_key = "k"\nrevision = "x"\n'
    assert problems(tmp_path, text) == [
        f"connections.a.public_api_key: is required (or set {ENV}A__PUBLIC_API_KEY)",
        "connections.b.revision: must look like YYYY-MM-DD, e.g. 2026-07-15",
    ]


def test_an_unknown_top_level_key_is_a_problem(tmp_path: Path) -> None:
    [found] = problems(tmp_path, 'debug = true\n[connections.a]\npublic_api_key = "k"\n')
    assert found.startswith("unknown top-level key 'debug' (expected ")


def test_a_file_without_connections_is_a_problem(tmp_path: Path) -> None:
    assert problems(tmp_path, "") == ["no connections; add a [connections.NAME] table with public_api_key"]


def test_connections_that_are_not_a_table_are_a_problem(tmp_path: Path) -> None:
    assert problems(tmp_path, 'connections = "main"\n') == [
        "'connections' must be a table of [connections.NAME] tables"
    ]


def test_a_connection_that_is_not_a_table_is_a_problem(tmp_path: Path) -> None:
    assert problems(tmp_path, f'[connections]\nmain = "{PUBLIC}"\n') == ["connections.main: must be a table"]


def test_a_missing_file_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.toml", {})
    assert caught.value.problems == [f"{tmp_path / 'absent.toml'}: file not found (pass --config FILE)"]


def test_invalid_toml_is_a_problem_that_does_not_quote_the_file(tmp_path: Path) -> None:
    found = problems(tmp_path, f'[connections.a]\npublic_api_key = "{PUBLIC}\n')
    assert len(found) == 1
    assert found[0].startswith("not valid TOML: ")
    assert PUBLIC not in found[0]


def test_an_environment_variable_overrides_one_key(tmp_path: Path) -> None:
    text = '[connections.Main]\npublic_api_key = "old"\nlist_id = "L1"\n'
    config = load(tmp_path, text, {f"{ENV}MAIN__PUBLIC_API_KEY": PUBLIC, f"{ENV}main__list_id": "L2"})
    connection = config.connection("Main")
    assert (connection.public_key.reveal(), connection.mapping.list_id) == (PUBLIC, "L2")


def test_an_environment_variable_can_define_a_new_connection(tmp_path: Path) -> None:
    config = load(tmp_path, "", {f"{ENV}STAGING__PUBLIC_API_KEY": PUBLIC, f"{ENV}STAGING__LIST_ID": "L"})
    assert list(config.connections) == ["staging"]
    assert config.connection("staging").mapping.list_id == "L"


def test_table_settings_come_from_the_environment_as_json(tmp_path: Path) -> None:
    environ = {
        f"{ENV}A__METRIC_NAMES": '{"Session Start": "App Opened"}',
        f"{ENV}A__SUPPORTED_PLATFORMS": '["iOS", "Android"]',
        f"{ENV}A__CONSENT_MAPPING": '{"email_marketing": "email"}',
        f"{ENV}A__PROPERTY_MAPPING": '[{"map": "photo", "value": "$image"}]',
    }
    mapping = load(tmp_path, '[connections.a]\npublic_api_key = "k"\n', environ).connection("a").mapping
    assert mapping.metric_names == {"Session Start": "App Opened"}
    assert mapping.supported_platforms == {"ios", "android"}
    assert (mapping.consent_mapping, mapping.property_mapping) == ({"email_marketing": "email"}, {"photo": ("image",)})


def test_platforms_may_come_from_the_environment_comma_separated(tmp_path: Path) -> None:
    environ = {f"{ENV}A__SUPPORTED_PLATFORMS": "iOS, Custom Feeds"}
    mapping = load(tmp_path, '[connections.a]\npublic_api_key = "k"\n', environ).connection("a").mapping
    assert mapping.supported_platforms == {"ios", "customfeeds"}


def test_bad_json_in_the_environment_is_exactly_one_problem(tmp_path: Path) -> None:
    found = problems(tmp_path, '[connections.a]\npublic_api_key = "k"\n', {f"{ENV}A__METRIC_NAMES": "{oops"})
    assert found == [f"{ENV}A__METRIC_NAMES: must be JSON"]


def test_a_malformed_environment_variable_name_is_a_problem(tmp_path: Path) -> None:
    environ = {f"{ENV}A": "x", f"{ENV}A__B__C": "y", f"{ENV}__LIST_ID": "z"}
    found = problems(tmp_path, '[connections.a]\npublic_api_key = "k"\n', environ)
    assert sorted(found) == sorted(f"{name}: expected {ENV}<NAME>__<KEY>" for name in environ)


def test_an_environment_override_of_a_connection_that_is_not_a_table_is_one_problem(tmp_path: Path) -> None:
    found = problems(tmp_path, '[connections]\nmain = "x"\n', {f"{ENV}MAIN__LIST_ID": "L"})
    assert found == ["connections.main: must be a table"]


def test_other_environment_variables_are_ignored(tmp_path: Path) -> None:
    environ = {"MPARTICLE_KLAVIYO_OTHER": "x", "PATH": "/bin"}
    assert list(load(tmp_path, '[connections.a]\npublic_api_key = "k"\n', environ).connections) == ["a"]


def test_the_only_connection_is_chosen_without_a_name(tmp_path: Path) -> None:
    assert load(tmp_path, '[connections.only]\npublic_api_key = "k"\n').connection(None).name == "only"


def test_a_name_is_needed_when_there_are_several_connections(tmp_path: Path) -> None:
    path = write(tmp_path, '[connections.a]\npublic_api_key = "k"\n[connections.b]\npublic_api_key = "k"\n')
    config = load_config(path, {})
    with pytest.raises(ConfigError) as caught:
        config.connection(None)
    assert caught.value.problems == [f"{path}: choose a connection with --connection (configured: a, b)"]


def test_an_unknown_connection_name_is_a_problem(tmp_path: Path) -> None:
    path = write(tmp_path, '[connections.a]\npublic_api_key = "k"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, {}).connection("b")
    assert caught.value.problems == [f"{path}: no connection 'b' (configured: a)"]


def test_with_overrides_gives_a_new_connection_and_keeps_the_old_one(tmp_path: Path) -> None:
    connection = load(tmp_path, '[connections.a]\npublic_api_key = "k"\nlist_id = "L1"\n').connection("a")
    changed = connection.with_overrides({"list_id": "L2", "private_api_key": PRIVATE})
    assert (changed.mapping.list_id, changed.server_mode, changed.name) == ("L2", True, "a")
    assert (connection.mapping.list_id, connection.server_mode) == ("L1", False)


def test_keys_never_appear_in_reprs(tmp_path: Path) -> None:
    text = f'[connections.a]\npublic_api_key = "{PUBLIC}"\nprivate_api_key = "{PRIVATE}"\n'
    connection = load(tmp_path, text).connection("a")
    shown = " ".join(
        [
            repr(connection),
            str(connection.public_key),
            repr(connection.public_key),
            str(connection.private_key),
            repr(connection.settings),
            str(connection.settings),
            repr(connection.mapping),
            repr(connection.settings.model_dump()),
        ]
    )
    assert PUBLIC not in shown
    assert PRIVATE not in shown
    assert repr(connection) == "Connection(name='a', mode=server, klaviyo_url='https://a.klaviyo.com')"


def test_keys_never_appear_in_config_errors(tmp_path: Path) -> None:
    text = f"""[connections.a]
public_api_key = "{PUBLIC}"
private_api_key = ["{PRIVATE}"]
publik_api_key = "{PUBLIC}"
list_id = {{ id = "{PRIVATE}" }}
revision = "{PRIVATE}"
klaviyo_url = "{PUBLIC}"
default_phone_region = "{PRIVATE}"
external_email_identity_type = "{PUBLIC}"
"""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {f"{ENV}A__METRIC_NAMES": PRIVATE, f"{ENV}A__PHONE_IDENTIFIER": PUBLIC})
    shown = str(caught.value) + repr(caught.value) + " ".join(caught.value.problems)
    assert len(caught.value.problems) == 9
    assert PUBLIC not in shown
    assert PRIVATE not in shown


def test_a_revision_must_look_like_a_date(tmp_path: Path) -> None:
    settings = ConnectionSettings.model_validate({"public_api_key": "k", "revision": "2026-07-15.pre"})
    assert settings.revision == "2026-07-15.pre"
    assert problems(tmp_path, '[connections.a]\npublic_api_key = "k"\nrevision = "2026/07/15"\n') == [
        "connections.a.revision: must look like YYYY-MM-DD, e.g. 2026-07-15"
    ]


def test_metric_names_may_be_given_as_json_text_as_firehose_settings_are() -> None:
    from mparticle_klaviyo.config import ConnectionSettings

    settings = ConnectionSettings.model_validate({"public_api_key": "K", "metric_names": '{"Placed Order": "Order"}'})
    assert settings.metric_names == {"Placed Order": "Order"}


SHOP_AT_10_PER_S = f"""
[connections.shop]
public_api_key = "{PUBLIC}"
rate_limits = {{ "POST /client/events" = [10, 600] }}
"""


def test_connections_to_one_account_with_different_rate_limits_are_a_problem(tmp_path: Path) -> None:
    text = (
        SHOP_AT_10_PER_S
        + f"""
[connections.app]
public_api_key = "{PUBLIC}"
"""
    )
    [problem] = problems(tmp_path, text)
    assert problem.startswith("connections app, shop send to the same Klaviyo account")
    assert "same rate_limits" in problem
    assert PUBLIC not in problem


def test_connections_to_one_account_with_the_same_limits_or_to_other_accounts_are_fine(tmp_path: Path) -> None:
    text = (
        SHOP_AT_10_PER_S
        + SHOP_AT_10_PER_S.replace("connections.shop", "connections.app")
        + """
[connections.other]
public_api_key = "OTHER1"
klaviyo_url = "http://127.0.0.1:8788"
"""
    )
    assert sorted(load(tmp_path, text).connections) == ["app", "other", "shop"]


EXTERNAL_ID = "connections.a.external_id_identity_type"
EXTERNAL_ID_CHOICES = "must be one of Customer ID, Other, Other2 ... Other10, MPID"


def external_id_table(value: str) -> str:
    return f'[connections.a]\npublic_api_key = "k"\nexternal_id_identity_type = "{value}"\n'


def test_no_identity_is_the_external_id_by_default(tmp_path: Path) -> None:
    connection = load(tmp_path, '[connections.a]\npublic_api_key = "k"\n').connection("a")
    assert connection.mapping.external_id_identity is None
    assert load(tmp_path, external_id_table("")).connection("a").mapping.external_id_identity is None


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("Customer ID", "customer_id"),
        ("customer_id", "customer_id"),
        ("customerid", "customer_id"),
        ("customer", "customer_id"),
        ("Other", "other"),
        ("other_id_3", "other3"),
        ("Other10", "other10"),
        ("MPID", "mpid"),
        ("mpid", "mpid"),
    ],
)
def test_the_external_id_identity_accepts_labels_and_wire_names(tmp_path: Path, value: str, key: str) -> None:
    assert load(tmp_path, external_id_table(value)).connection("a").mapping.external_id_identity == key


def test_the_external_id_identity_may_come_from_the_environment(tmp_path: Path) -> None:
    environ = {f"{ENV}A__EXTERNAL_ID_IDENTITY_TYPE": "other_id_5"}
    connection = load(tmp_path, '[connections.a]\npublic_api_key = "k"\n', environ).connection("a")
    assert connection.mapping.external_id_identity == "other5"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Custmer Id", f"{EXTERNAL_ID_CHOICES} (did you mean Customer ID?)"),
        ("Others3", f"{EXTERNAL_ID_CHOICES} (did you mean Other3?)"),
        ("mpd", f"{EXTERNAL_ID_CHOICES} (did you mean MPID?)"),
        ("Email", EXTERNAL_ID_CHOICES),
        ("Other11", f"{EXTERNAL_ID_CHOICES} (did you mean Other10?)"),
    ],
)
def test_a_bad_external_id_identity_is_one_problem_with_the_closest_name(
    tmp_path: Path, value: str, message: str
) -> None:
    assert problems(tmp_path, external_id_table(value)) == [f"{EXTERNAL_ID}: {message}"]


def test_an_external_id_identity_that_is_not_text_is_one_problem(tmp_path: Path) -> None:
    text = '[connections.a]\npublic_api_key = "k"\nexternal_id_identity_type = 5\n'
    assert problems(tmp_path, text) == [f"{EXTERNAL_ID}: must be a string"]


def test_a_key_in_the_external_id_identity_is_never_shown(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, external_id_table(PUBLIC))
    assert problem.startswith(f"{EXTERNAL_ID}: {EXTERNAL_ID_CHOICES}")
    assert PUBLIC not in problem


def test_consent_removal_is_off_by_default(tmp_path: Path) -> None:
    config = load(tmp_path, '[connections.acme]\npublic_api_key = "PK1234"\n')
    assert config.connections["acme"].mapping.consent_removal is False


def test_consent_removal_needs_the_private_key(tmp_path: Path) -> None:
    found = problems(tmp_path, '[connections.acme]\npublic_api_key = "PK1234"\nconsent_removal = true\n')
    assert len(found) == 1 and "consent_removal needs private_api_key" in found[0]
    config = load(
        tmp_path, '[connections.acme]\npublic_api_key = "PK1234"\nprivate_api_key = "pk_abc"\nconsent_removal = true\n'
    )
    assert config.connections["acme"].mapping.consent_removal is True


DB_PASSWORD = "db-pw-never_shown_0123"


def test_the_store_may_be_a_postgresql_url_whose_password_no_repr_shows(tmp_path: Path) -> None:
    url = f"postgresql://mpk:{DB_PASSWORD}@db.internal:5432/jobs"
    config = load(tmp_path, f'[service]\nstore = "{url}"\n[connections.a]\npublic_api_key = "{PUBLIC}"\n')
    assert config.service.store == url
    assert DB_PASSWORD not in repr(config.service) + str(config.service)


def test_a_store_url_of_another_kind_is_a_problem_that_does_not_quote_it(tmp_path: Path) -> None:
    url = f"mysql://mpk:{DB_PASSWORD}@db.internal/jobs"
    found = problems(tmp_path, f'[service]\nstore = "{url}"\n[connections.a]\npublic_api_key = "{PUBLIC}"\n')
    assert found == [
        "service.store: must be a SQLite file path or a postgresql:// URL (no other kind of URL is supported)"
    ]
    assert DB_PASSWORD not in " ".join(found)


def test_the_console_password_is_off_by_default_and_never_shown(tmp_path: Path) -> None:
    base = '[connections.a]\npublic_api_key = "k"\n'
    assert load(tmp_path, base).service.console_password is None
    service = load(tmp_path, '[service]\nconsole_password = "open sesame 12345"\n' + base).service
    assert service.console_password is not None
    assert service.console_password.get_secret_value() == "open sesame 12345"
    assert "open sesame" not in repr(service) + str(service) + repr(service.model_dump())


def test_a_short_console_password_is_refused_without_being_echoed(tmp_path: Path) -> None:
    found = problems(tmp_path, '[service]\nconsole_password = "hunter2"\n[connections.a]\npublic_api_key = "k"\n')
    assert any("console_password: must be at least 12 characters" in p for p in found)
    assert "hunter2" not in " ".join(found)


def test_the_console_password_may_come_from_the_environment(tmp_path: Path) -> None:
    environ = {"MPARTICLE_KLAVIYO_CONSOLE_PASSWORD": "from the environment"}
    service = load(tmp_path, '[connections.a]\npublic_api_key = "k"\n', environ).service
    assert service.console_password is not None
    assert service.console_password.get_secret_value() == "from the environment"
