"""Domain errors every app raises, defined once.

Each channel maps them in one place: the API's exception handler to HTTP statuses,
``backoffice.cli.JsonCommand`` to exit codes, the admin and the Telegram handlers to a message.
An app adds its own errors by subclassing one of these, and so inherits how every channel shows
them.
"""

from typing import Any


class DomainError(Exception):
    """Base of every domain error; ``code`` is a stable machine-readable name."""

    code = "error"

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context

    def as_dict(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.message, **self.context}


class InvalidInput(DomainError):
    """The request itself is wrong; ``fields`` maps each bad field to what is wrong with it."""

    code = "invalid"

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        message = "; ".join(f"{name}: {problem}" for name, problem in fields.items())
        super().__init__(message, fields=fields)


class NotFound(DomainError):
    code = "not_found"


class NotPermitted(DomainError):
    code = "forbidden"


class Conflict(DomainError):
    """The change collides with the current state of the world (someone else got there first)."""

    code = "conflict"


class InvalidTransition(Conflict):
    """The object is in a state that does not allow the asked change."""

    code = "invalid_transition"

    def __init__(self, message: str, *, status: str) -> None:
        super().__init__(message, status=status)
        self.status = status
