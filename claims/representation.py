"""How a claim and an approval request look outside the domain: one shape for every channel.

The API answers with these dictionaries, the claim and approval commands print them (adding
fields of their own, never renaming one), and the audit trail stores them in an event's details.
Values are ready for JSON: timestamps in the project's one format (``backoffice.timestamps``),
users by username.
"""

from datetime import datetime
from typing import Any

from django.utils import timezone

from backoffice.timestamps import iso_utc

from .models import ApprovalRequest, Claim
from .policies import Rules
from .selectors import waiting_line
from .voting import tally


def claim_data(claim: Claim, now: datetime | None = None) -> dict[str, Any]:
    """A lease. The owner is the user who claimed it; agent id and fingerprint are their labels.
    Nothing here proves holdership: the lease token is only in the answer that granted it."""
    now = now or timezone.now()
    return {
        "id": claim.pk,
        "story": claim.story,
        "todolist": claim.todolist,
        "owner": claim.owner,
        "agent_id": claim.agent_id,
        "fingerprint": claim.fingerprint,
        "holder": claim.holder,
        "fencing_token": claim.fencing_token,
        "ttl_seconds": claim.ttl_seconds,
        "version": claim.version,
        "acquired_at": iso_utc(claim.acquired_at),
        "expires_at": iso_utc(claim.expires_at),
        "released_at": iso_utc(claim.released_at),
        "live": claim.is_live(now),
        "seconds_left": claim.seconds_left(now),
        "frozen": claim.frozen,
        "frozen_reason": claim.frozen_reason,
        "waiting": waiting_line(claim, now).count(),
        "previous_owner": claim.previous_owner,
        "previous_agent_id": claim.previous_agent_id,
        "created_at": iso_utc(claim.created_at),
        "updated_at": iso_utc(claim.updated_at),
    }


def approval_data(approval: ApprovalRequest) -> dict[str, Any]:
    """A request, its policy and votes with their count, and, once there is one, its decision."""
    votes = list(approval.votes.all())
    return {
        "id": str(approval.pk),
        "kind": approval.kind,
        "text": approval.text,
        "payload": approval.payload,
        "requested_by": approval.requested_by,
        "agent_id": approval.agent_id,
        "requested_by_user": _username(approval.requested_by_user),
        "claim": approval.claim_id,
        "status": approval.status,
        "decided_by": _username(approval.decided_by),
        "decided_at": iso_utc(approval.decided_at),
        "decision_source": approval.decision_source,
        "decision_note": approval.decision_note,
        "expires_at": iso_utc(approval.expires_at),
        "executed_at": iso_utc(approval.executed_at),
        "archived_at": iso_utc(approval.archived_at),
        "created_at": iso_utc(approval.created_at),
        "updated_at": iso_utc(approval.updated_at),
        "policy": Rules.from_request(approval).policy,
        "votes": [
            {
                "voter": _username(vote.voter),
                "choice": vote.choice,
                "source": vote.source,
                "note": vote.note,
                "created_at": iso_utc(vote.created_at),
                "updated_at": iso_utc(vote.updated_at),
            }
            for vote in votes
        ],
        "tally": tally(approval, votes).as_dict(),
    }


def _username(user: Any) -> str | None:
    return user.get_username() if user is not None else None
