"""Secrets never show their value in reprs, strings or the objects that hold them."""

from __future__ import annotations

from mparticle_klaviyo.config import Connection, ConnectionSettings
from mparticle_klaviyo.secret import Secret

PUBLIC = "PUBKEY-7f3c9a"
PRIVATE = "pk_live_5e1d2c3b4a"


def test_a_secret_prints_stars_but_reveals_its_value_on_demand() -> None:
    secret = Secret(PUBLIC)
    assert PUBLIC not in repr(secret) and PUBLIC not in str(secret) and PUBLIC not in f"{secret}"
    assert secret.reveal() == PUBLIC


def test_connections_and_their_settings_never_show_keys() -> None:
    table = {"public_api_key": PUBLIC, "private_api_key": PRIVATE}
    settings = ConnectionSettings.model_validate(table)
    connection = Connection("c", settings, table)
    for text in (repr(connection), str(connection), repr(settings), str(settings), repr(connection.mapping)):
        assert PUBLIC not in text and PRIVATE not in text


def test_secrets_compare_by_value() -> None:
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")
    assert not Secret("")
