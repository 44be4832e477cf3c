"""What the claim and approval commands share besides ``backoffice.cli``."""

from argparse import ArgumentParser
from typing import Any

from .models import ApprovalRequest, Claim
from .representation import approval_data, claim_data


def claim_as_dict(claim: Claim, **extra: Any) -> dict[str, Any]:
    """What the claim commands print: the claim as every channel shows it, plus the holder's
    fingerprint (whoever runs these commands is the holder, or staff)."""
    return {**claim_data(claim), "fingerprint": claim.fingerprint, **extra}


def approval_as_dict(approval: ApprovalRequest, **extra: Any) -> dict[str, Any]:
    """What the approval commands print: the request as every channel shows it, plus the short
    id the commands accept."""
    return {**approval_data(approval), "short_id": approval.short_id, **extra}


def add_holder_arguments(parser: ArgumentParser) -> None:
    """The holder proves itself with its agent id or its fingerprint."""
    holder = parser.add_mutually_exclusive_group(required=True)
    holder.add_argument("--agent-id", help="The holder's agent id.")
    holder.add_argument("--fingerprint", help="The holder's session fingerprint.")
