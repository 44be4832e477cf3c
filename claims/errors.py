"""The errors only leases raise; the shared ones are in ``backoffice.errors``.

Each subclasses a shared error, so the API answers them with its status and commands exit with
its code without knowing about leases.
"""

from backoffice.errors import Conflict, NotPermitted
from backoffice.timestamps import iso_utc

from .models import Claim


class ClaimConflict(Conflict):
    """A live lease is held by someone else, or others wait in line before the caller."""

    code = "conflict"

    def __init__(self, claim: Claim, *, waiting: int = 0) -> None:
        if claim.is_live():
            why = f"is held by {claim.holder} until {iso_utc(claim.expires_at)}"
        else:
            why = f"is free, but {waiting} claimer(s) wait in line for it"
        super().__init__(
            f"{claim.work_item} {why}",
            holder={"owner": claim.owner, "agent_id": claim.agent_id},
            expires_at=iso_utc(claim.expires_at),
            waiting=waiting,
        )


class Frozen(Conflict):
    """Staff froze the work item: nobody may claim it until it is unfrozen."""

    code = "frozen"

    def __init__(self, claim: Claim) -> None:
        super().__init__(
            f"{claim.work_item} is frozen: {claim.frozen_reason}", reason=claim.frozen_reason
        )


class StaleFence(Conflict):
    """The caller's fencing token is not the work item's current one: its lease was lost."""

    code = "stale_fence"

    def __init__(self, claim: Claim, fencing_token: int) -> None:
        super().__init__(
            f"Fencing token {fencing_token} on {claim.work_item} is stale; the current one is "
            f"{claim.fencing_token}.",
            fencing_token=claim.fencing_token,
        )


class NotHolder(NotPermitted):
    """The caller did not prove it holds the lease (no lease token, or the wrong one)."""

    code = "not_holder"
