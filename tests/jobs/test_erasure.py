"""An erasure request -> one durable job, keyed by mParticle's request id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.jobs.erasure import ERASURE, decode_erasure_job, plan_erasure
from mparticle_klaviyo.mparticle.dsr import ErasureRequest
from tests.service.live import CONNECTIONS, make_config

TABLE = {**CONNECTIONS["acme"], "private_api_key": "pk_" + "e" * 32, "forward_erasure": True}
ACME = make_config(Path("unused.sqlite3"), {"acme": TABLE}).connections["acme"]


def erasure(identities: dict[str, str], **changes: Any) -> ErasureRequest:
    return ErasureRequest(request_id="req-1", identities=identities, regulation="gdpr", **changes)


def test_the_job_names_the_person_by_email_and_e164_phone() -> None:
    job = plan_erasure(erasure({"email": "ada@example.com", "mobile_number": "+1 (555) 555-0100"}), ACME)
    assert (job.kind, job.key, job.profile_key, job.connection) == (
        ERASURE,
        "erasure:req-1",
        "email:ada@example.com",
        "acme",
    )
    stored = decode_erasure_job(job.payload)
    assert (stored.email, stored.phone_number, stored.request_id) == ("ada@example.com", "+15555550100", "req-1")
    assert stored.profile_keys() == ["email:ada@example.com", "phone:+15555550100"]


def test_a_phone_only_subject_is_keyed_by_its_phone() -> None:
    job = plan_erasure(erasure({"mobile_number": "+15555550100"}), ACME)
    assert job.profile_key == "phone:+15555550100"


@pytest.mark.parametrize("identities", [{"customer_id": "c-1"}, {"email": "not an email"}, {"mobile_number": "12"}])
def test_a_subject_klaviyo_cannot_find_is_refused(identities: dict[str, str]) -> None:
    with pytest.raises(InputError) as caught:
        plan_erasure(erasure(identities), ACME)
    assert caught.value.pointer == "/subject_identities"
    assert "'email'" in caught.value.message


def test_a_request_for_another_klaviyo_account_is_refused() -> None:
    with pytest.raises(InputError) as caught:
        plan_erasure(erasure({"email": "ada@example.com"}, settings={"publicApiKey": "OTHER1"}), ACME)
    assert caught.value.pointer.endswith("/publicApiKey")
