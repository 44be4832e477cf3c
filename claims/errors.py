"""Domain errors of claims and approvals, defined once.

Each channel maps them in one place: the API's exception handler to HTTP statuses, the command
base class to exit codes, the admin to a message.
"""


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
    """A live lease is held by someone else."""

    code = "conflict"

    def __init__(self, claim):
        super().__init__(
            f"{claim.story}/{claim.todolist} is held by {claim.owner} (agent {claim.agent_id}) "
            f"until {claim.expires_at.isoformat()}",
            holder={"owner": claim.owner, "agent_id": claim.agent_id},
            expires_at=claim.expires_at.isoformat(),
        )


class NotHolder(ClaimsError):
    code = "not_holder"


class NotPermitted(ClaimsError):
    code = "forbidden"


class InvalidTransition(ClaimsError):
    """The request is in a state that does not allow the asked change."""

    code = "invalid_transition"

    def __init__(self, message, *, status):
        super().__init__(message, status=status)
        self.status = status
