"""What the claim and approval commands share besides ``backoffice.cli``."""

import os
from argparse import ArgumentParser
from typing import Any

from backoffice.timestamps import iso_utc

from .models import ApprovalRequest, Claim
from .representation import approval_data, claim_data
from .selectors import waiting_line

# Where the claim commands read the lease token when --lease-token is not given, so that it
# stays out of the process list and the shell history.
LEASE_TOKEN_ENV = "CLAIMDESK_LEASE_TOKEN"  # noqa: S105 - a variable name


def claim_as_dict(claim: Claim, **extra: Any) -> dict[str, Any]:
    """What the claim commands print: the claim as every channel shows it, plus who waits in
    line for it; never anything that proves holdership."""
    return {
        **claim_data(claim),
        "waiting_line": [
            {"who": str(waiter), "since": iso_utc(waiter.joined_at)}
            for waiter in waiting_line(claim)
        ],
        **extra,
    }


def approval_as_dict(approval: ApprovalRequest, **extra: Any) -> dict[str, Any]:
    """What the approval commands print: the request as every channel shows it, plus the short
    id the commands accept."""
    return {**approval_data(approval), "short_id": approval.short_id, **extra}


def add_user_argument(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--user",
        help="The username you act as (default: CLI_SERVICE_USER; one of the two is required).",
    )


def add_lease_arguments(parser: ArgumentParser) -> None:
    """The holder proves itself with its lease token, and may say which grant it holds."""
    parser.add_argument(
        "--lease-token",
        help=f"The lease token printed when the lease was granted (default: ${LEASE_TOKEN_ENV}).",
    )
    parser.add_argument(
        "--fencing-token",
        type=int,
        help="Refuse (exit 3) unless this is still the work item's current fencing token.",
    )


def lease_token(options: dict[str, Any]) -> str:
    return options.get("lease_token") or os.environ.get(LEASE_TOKEN_ENV, "")
