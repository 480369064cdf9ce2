"""Masking: emails and phone numbers never shown whole."""

from __future__ import annotations

from mparticle_klaviyo.console.mask import mask, mask_email, mask_phone, mask_text


def test_an_email_keeps_its_first_letters_and_top_level_domain() -> None:
    assert mask_email("jane.doe@example.com") == "j***@e***.com"


def test_a_phone_keeps_its_first_and_last_digits() -> None:
    assert mask_phone("+1 555 555 0123") == "+1********23"


def test_emails_and_phones_inside_text_are_masked() -> None:
    text = mask_text("invalid: 'jane.doe@example.com' is not allowed (+15555550123)")
    assert "jane.doe@example.com" not in text
    assert "5555550123" not in text
    assert "j***@e***.com" in text


def test_short_numbers_and_words_stay() -> None:
    assert mask_text("http_400 after 8 attempts, 2026-01-31") == "http_400 after 8 attempts, 2026-01-31"


def test_a_document_is_masked_at_any_depth_and_under_phone_keys_whole() -> None:
    document = {
        "user_identities": {"email": "a.b@example.org", "mobile_number": "555-0100"},
        "events": [{"data": {"custom_attributes": {"contact": "x@y.io", "count": 3}}}],
    }
    masked = mask(document)
    assert masked["user_identities"] == {"email": "a***@e***.org", "mobile_number": "5****00"}
    assert masked["events"][0]["data"]["custom_attributes"] == {"contact": "x***@y***.io", "count": 3}
