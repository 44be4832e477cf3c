"""The errors only leases raise; the shared ones are in ``backoffice.errors``.

Each subclasses a shared error, so the API answers them with its status and commands exit with
its code without knowing about leases.
"""

from backoffice.errors import Conflict, NotPermitted

from .models import Claim


class ClaimConflict(Conflict):
    """A live lease is held by someone else."""

    code = "conflict"

    def __init__(self, claim: Claim) -> None:
        super().__init__(
            f"{claim.story}/{claim.todolist} is held by {claim.owner} (agent {claim.agent_id}) "
            f"until {claim.expires_at.isoformat()}",
            holder={"owner": claim.owner, "agent_id": claim.agent_id},
            expires_at=claim.expires_at.isoformat(),
        )


class NotHolder(NotPermitted):
    """The caller does not hold the lease it tries to change."""

    code = "not_holder"
