"""What the claim and approval commands share besides ``backoffice.cli``."""

from .policies import Rules
from .voting import tally


def claim_as_dict(claim, **extra):
    """What the claim commands print about a claim."""
    return {
        "id": claim.pk,
        "story": claim.story,
        "todolist": claim.todolist,
        "holder": {
            "owner": claim.owner,
            "agent_id": claim.agent_id,
            "fingerprint": claim.fingerprint,
        },
        "live": claim.is_live(),
        "acquired_at": claim.acquired_at,
        "expires_at": claim.expires_at,
        "released_at": claim.released_at,
        "seconds_left": claim.seconds_left(),
        "ttl_seconds": claim.ttl_seconds,
        "version": claim.version,
        "previous_holder": {
            "owner": claim.previous_owner,
            "agent_id": claim.previous_agent_id,
        },
        **extra,
    }


def approval_as_dict(approval, **extra):
    """What the approval commands print about a request."""
    return {
        "id": str(approval.pk),
        "short_id": approval.short_id,
        "kind": approval.kind,
        "status": approval.status,
        "text": approval.text,
        "requested_by": approval.requested_by,
        "claim": approval.claim_id,
        "created_at": approval.created_at,
        "expires_at": approval.expires_at,
        "decided_by": approval.decided_by.get_username() if approval.decided_by else None,
        "decided_at": approval.decided_at,
        "decision_source": approval.decision_source,
        "decision_note": approval.decision_note,
        "policy": Rules.from_request(approval).policy,
        "votes": [
            {"voter": vote.voter.get_username(), "choice": vote.choice, "source": vote.source}
            for vote in approval.votes.select_related("voter")
        ],
        "tally": tally(approval).as_dict(),
        **extra,
    }


def add_holder_arguments(parser):
    """The holder proves itself with its agent id or its fingerprint."""
    holder = parser.add_mutually_exclusive_group(required=True)
    holder.add_argument("--agent-id", help="The holder's agent id.")
    holder.add_argument("--fingerprint", help="The holder's session fingerprint.")
