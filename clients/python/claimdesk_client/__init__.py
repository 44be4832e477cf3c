"""A client for the Claimdesk API: leases, approvals, jobs and the audit trail (docs/client.md)."""

# The API version this client speaks: the schema's info.version (/api/schema/).
__version__ = "1.0.0"

from .client import Client
from .errors import (
    ClaimdeskError,
    Conflict,
    Denied,
    Expired,
    Forbidden,
    Frozen,
    Invalid,
    InvalidTransition,
    LeaseLost,
    NotApproved,
    NotFound,
    NotHolder,
    ServerError,
    StaleFence,
    Throttled,
    TimedOut,
    Unauthorized,
)
from .lease import Lease

__all__ = [
    "ClaimdeskError",
    "Client",
    "Conflict",
    "Denied",
    "Expired",
    "Forbidden",
    "Frozen",
    "Invalid",
    "InvalidTransition",
    "Lease",
    "LeaseLost",
    "NotApproved",
    "NotFound",
    "NotHolder",
    "ServerError",
    "StaleFence",
    "Throttled",
    "TimedOut",
    "Unauthorized",
]
