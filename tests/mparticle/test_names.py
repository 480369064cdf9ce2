"""Canonical identity, platform and transition names; text and number coercion."""

from __future__ import annotations

import math
from typing import Any

import pytest

from mparticle_klaviyo.mparticle.names import (
    DEFAULT_SUPPORTED_PLATFORMS,
    as_number,
    as_text,
    batch_transition,
    canonical_identity,
    canonical_platform,
)


@pytest.mark.parametrize("n", range(2, 11))
def test_batch_and_firehose_spellings_of_other_ids_become_one_key(n: int) -> None:
    assert canonical_identity(f"other_id_{n}") == f"other{n}"
    assert canonical_identity(f"other{n}") == f"other{n}"


@pytest.mark.parametrize("spelling", ["customer_id", "customerid", "customer", "Customer_ID"])
def test_every_customer_id_spelling_becomes_customer_id(spelling: str) -> None:
    assert canonical_identity(spelling) == "customer_id"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("email", "email"), (" Email ", "email"), ("mobile_number", "mobile_number"), ("other", "other")],
)
def test_identity_types_are_trimmed_and_lower_cased(raw: str, expected: str) -> None:
    assert canonical_identity(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("iOS", "ios"),
        ("Android", "android"),
        ("web", "mobileweb"),
        ("MobileWeb", "mobileweb"),
        ("mobileweb", "mobileweb"),
        ("tvOS", "tvos"),
        ("roku", "roku"),
        ("Roku", "roku"),
        ("out_of_band", "customfeeds"),
        ("OutOfBand", "customfeeds"),
        ("unknown", "customfeeds"),
        ("Custom Feeds", "customfeeds"),
        ("alexa", "alexa"),
        ("smart_tv", "smarttv"),
        ("SmartTV", "smarttv"),
        ("fire_tv", "firetv"),
        ("FireTV", "firetv"),
        ("xbox", "xbox"),
        ("UnityIOS", "ios"),
        ("UnityAndroid", "android"),
        ("Desktop", "desktop"),
    ],
)
def test_platform_names_from_batches_firehose_and_settings_share_one_key(raw: str, expected: str) -> None:
    assert canonical_platform(raw) == expected


def test_the_default_supported_platforms_are_the_ten_the_integration_lists() -> None:
    keys = {canonical_platform(p) for p in DEFAULT_SUPPORTED_PLATFORMS}
    assert keys == {
        "ios",
        "android",
        "mobileweb",
        "tvos",
        "roku",
        "customfeeds",
        "alexa",
        "smarttv",
        "firetv",
        "xbox",
    }


@pytest.mark.parametrize(
    ("kind", "first_run", "upgrade", "expected"),
    [
        ("application_initialized", True, False, "install"),
        ("application_initialized", True, True, "install"),
        ("application_initialized", False, True, "upgrade"),
        ("application_initialized", None, None, "initialize"),
        ("application_initialized", False, False, "initialize"),
        ("application_exit", None, None, "exit"),
        ("application_background", None, None, "background"),
        ("application_foreground", True, True, "foreground"),
        ("something_new", None, None, "something_new"),
        (None, None, None, None),
    ],
)
def test_batch_transitions_use_firehose_vocabulary(
    kind: str | None, first_run: bool | None, upgrade: bool | None, expected: str | None
) -> None:
    assert batch_transition(kind, first_run, upgrade) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (True, None),
        (False, None),
        ("", None),
        ("abc", "abc"),
        (12, "12"),
        (-7, "-7"),
        (1.0, "1"),
        (1.5, "1.5"),
        (2**64, "18446744073709551616"),
        (-(2**63) - 1, "-9223372036854775809"),
    ],
)
def test_as_text_gives_decimal_text_for_numbers_and_none_for_nothing(value: Any, expected: str | None) -> None:
    assert as_text(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, 3),
        (2.5, 2.5),
        ("12", 12),
        (" 9.99 ", 9.99),
        ("-0.5", -0.5),
        ("1e3", 1000.0),
    ],
)
def test_as_number_accepts_numbers_and_numeric_strings(value: Any, expected: float) -> None:
    assert as_number(value) == expected
    assert type(as_number(value)) is type(expected)


@pytest.mark.parametrize(
    "value", [None, True, False, "", "ten", "1,5", "nan", "inf", "-inf", "1e400", math.inf, math.nan, [1], {"a": 1}]
)
def test_as_number_refuses_everything_that_is_not_a_finite_number(value: Any) -> None:
    assert as_number(value) is None
