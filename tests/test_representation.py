"""A claim and an approval request look the same through every channel: API, CLI, audit trail."""

import json

import pytest
from django.core.management import call_command

from api.serializers import ApprovalSerializer, ClaimSerializer
from audit.models import AuditEvent
from claims import services
from claims.representation import approval_data, claim_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def claim(agent_actor):
    return services.claim(
        story="checkout",
        todolist="payment-form",
        agent_id="builder-7",
        fingerprint="fp-7",
        actor=agent_actor,
    ).claim


@pytest.fixture
def approval(agent_actor, claim):
    return services.request_approval(
        kind="claim",
        text="Take it over",
        agent_id="builder-8",
        claim_id=claim.pk,
        actor=agent_actor,
    )


def printed(*args, capsys):
    call_command(*args)
    return json.loads(capsys.readouterr().out)


def test_the_api_documents_exactly_the_fields_it_sends(claim, approval):
    assert set(ClaimSerializer().fields) == set(claim_data(claim))
    assert set(ApprovalSerializer().fields) == set(approval_data(approval))


def test_the_cli_adds_fields_and_renames_none(claim, approval, capsys):
    shown_claim = printed("inspect", str(claim.pk), capsys=capsys)
    shown_approval = printed("approvals", "list", "--json", capsys=capsys)[0]

    assert set(claim_data(claim)) <= set(shown_claim)
    assert set(approval_data(approval)) <= set(shown_approval)


def test_the_audit_trail_keeps_the_same_shape(claim, approval):
    claimed = AuditEvent.objects.get(action="claim.acquired")
    requested = AuditEvent.objects.get(action="approval.requested")

    assert set(claim_data(claim)) <= set(claimed.details)
    assert set(approval_data(approval)) <= set(requested.details)
    assert requested.details["agent_id"] == "builder-8"
