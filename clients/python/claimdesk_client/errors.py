"""The API's error codes as exceptions, so an agent catches what it can handle.

Every error answer of the API has the shape ``{"error": code, "detail": message, "fields": {...}}``
with context beside it (``holder``, ``status``, ``fencing_token``); the exception keeps it all.
"""

from typing import Any

from .types import Approval


class ClaimdeskError(Exception):
    """Base of every error this client raises for an answer of the API."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        self.code: str = str(body.get("error", "error"))
        self.detail: str = str(body.get("detail", ""))
        self.fields: dict[str, Any] = body.get("fields") or {}
        super().__init__(f"{status} {self.code}: {self.detail}")


class Invalid(ClaimdeskError):
    """400: the request itself is wrong; ``fields`` says which field and why."""


class Unauthorized(ClaimdeskError):
    """401: no token, or an unknown or expired one."""


class Forbidden(ClaimdeskError):
    """403: the token's user may not do this."""


class NotHolder(Forbidden):
    """403 ``not_holder``: no lease token, or not the lease's."""


class NotFound(ClaimdeskError):
    """404: no such claim, request, job or endpoint."""


class Conflict(ClaimdeskError):
    """409: the state of the world says no (someone else holds the lease, say)."""


class Frozen(Conflict):
    """409 ``frozen``: staff stopped anyone claiming the work item."""


class StaleFence(Conflict):
    """409 ``stale_fence``: the lease was lost; ``body["fencing_token"]`` is the current one."""


class InvalidTransition(Conflict):
    """409 ``invalid_transition``: the request is already decided another way."""


class Throttled(ClaimdeskError):
    """429: too many requests for the token's user."""


class ServerError(ClaimdeskError):
    """5xx, after the client's retries."""


# The most specific class for a stable error code, then for a status.
BY_CODE: dict[str, type[ClaimdeskError]] = {
    "not_holder": NotHolder,
    "frozen": Frozen,
    "stale_fence": StaleFence,
    "invalid_transition": InvalidTransition,
}
BY_STATUS: dict[int, type[ClaimdeskError]] = {
    400: Invalid,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: Invalid,
    429: Throttled,
}


def error_for(status: int, body: dict[str, Any]) -> ClaimdeskError:
    cls = BY_CODE.get(str(body.get("error"))) or BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else ClaimdeskError
    return cls(status, body)


# --- Outcomes of the library's own waits ----------------------------------------------------


class LeaseLost(Exception):
    """The lease ended under the body of ``with client.lease(...)``: someone took it over, staff
    released it, or it could not be refreshed before it expired."""


class NotApproved(Exception):
    """``require_approval`` did not end in an approval; ``approval`` is the request as it is."""

    def __init__(self, message: str, approval: Approval) -> None:
        super().__init__(message)
        self.approval = approval


class Denied(NotApproved):
    """The approvers (or the policy's default outcome) denied the request."""


class Expired(NotApproved):
    """Nobody decided the request before its deadline."""


class TimedOut(NotApproved):
    """The request was still undecided when the caller's time ran out; it stays open."""
