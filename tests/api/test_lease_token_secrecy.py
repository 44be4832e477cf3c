"""The lease token is shown in the answer that grants the lease, and nowhere else, ever."""

import json
import logging

import pytest
from django.urls import reverse

from api.models import IdempotencyKey
from audit.models import AuditEvent
from claims.models import Claim

URL = "/api/v1/claims/"


@pytest.mark.django_db
def test_the_lease_token_appears_nowhere_after_the_grant_answer(
    agent_client, auditor_client, admin_client, claim_body, caplog
):
    caplog.set_level(logging.DEBUG)
    granted = agent_client.post(
        URL, claim_body, format="json", headers={"Idempotency-Key": "grant-1"}
    ).json()
    token = granted["lease_token"]
    claim_id = granted["id"]
    assert token.startswith("clt_")

    proof = {"Lease-Token": token}
    shown = [
        agent_client.post(URL, claim_body, format="json", headers={"Idempotency-Key": "grant-1"}),
        agent_client.post(URL, {**claim_body, "lease_token": token}, format="json"),
        agent_client.post(f"{URL}{claim_id}/refresh/", {}, format="json", headers=proof),
        agent_client.post(
            f"{URL}{claim_id}/release/", {"fencing_token": 1}, format="json", headers=proof
        ),
        agent_client.post(f"{URL}{claim_id}/release/", {"lease_token": token}, format="json"),
        agent_client.get(URL),
        agent_client.get(f"{URL}{claim_id}/"),
        auditor_client.get("/api/v1/audit/"),
        admin_client.get(reverse("admin:claims_claim_changelist")),
        admin_client.get(reverse("admin:claims_claim_change", args=[claim_id])),
        admin_client.get(reverse("admin:audit_auditevent_changelist")),
    ]

    assert all(response.status_code in (200, 201) for response in shown), [
        response.status_code for response in shown
    ]
    for response in shown:
        assert token not in response.content.decode()
    stored = [
        *AuditEvent.objects.values_list("actor_label", "details"),
        *IdempotencyKey.objects.values_list("response_body", flat=True),
        *Claim.objects.values_list("lease_token_hash", flat=True),
    ]
    assert token not in json.dumps(stored, default=str)
    assert token not in caplog.text
