"""Domain errors of claims and approvals, defined once.

Each channel maps them in one place: the API's exception handler to HTTP statuses, the command
base class to exit codes, the admin to a message.
"""

from backoffice.timestamps import iso_utc


class ClaimsError(Exception):
    """Base of every domain error; ``code`` is a stable machine-readable name."""

    code = "error"

    def __init__(self, message, **context):
        super().__init__(message)
        self.message = message
        self.context = context

    def as_dict(self):
        return {"error": self.code, "detail": self.message, **self.context}


class InvalidInput(ClaimsError):
    """The request itself is wrong; ``fields`` maps each bad field to what is wrong with it."""

    code = "invalid"

    def __init__(self, fields):
        self.fields = fields
        message = "; ".join(f"{name}: {problem}" for name, problem in fields.items())
        super().__init__(message, fields=fields)


class NotFound(ClaimsError):
    code = "not_found"


class ClaimConflict(ClaimsError):
    """A live lease is held by someone else, or others wait in line before the caller."""

    code = "conflict"

    def __init__(self, claim, *, waiting=0):
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


class Frozen(ClaimsError):
    """Staff froze the work item: nobody may claim it until it is unfrozen."""

    code = "frozen"

    def __init__(self, claim):
        super().__init__(
            f"{claim.work_item} is frozen: {claim.frozen_reason}", reason=claim.frozen_reason
        )


class StaleFence(ClaimsError):
    """The caller's fencing token is not the work item's current one: its lease was lost."""

    code = "stale_fence"

    def __init__(self, claim, fencing_token):
        super().__init__(
            f"Fencing token {fencing_token} on {claim.work_item} is stale; the current one is "
            f"{claim.fencing_token}.",
            fencing_token=claim.fencing_token,
        )


class NotHolder(ClaimsError):
    """The caller did not prove it holds the lease (no lease token, or the wrong one)."""

    code = "not_holder"


class NotPermitted(ClaimsError):
    code = "forbidden"


class InvalidTransition(ClaimsError):
    """The request is in a state that does not allow the asked change."""

    code = "invalid_transition"

    def __init__(self, message, *, status):
        super().__init__(message, status=status)
        self.status = status
