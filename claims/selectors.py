"""Reading claims and approval requests."""

import uuid

from django.core.exceptions import ValidationError
from django.utils import timezone

from backoffice.errors import InvalidInput, NotFound

from .models import ApprovalRequest, Claim

MIN_ID_PREFIX = 6


def get_claim(claim_id, *, lock=False):
    """The claim with ``claim_id``; ``lock`` holds its row until the caller's transaction ends."""
    queryset = Claim.objects.select_for_update() if lock else Claim.objects
    try:
        return queryset.get(pk=int(claim_id))
    except (Claim.DoesNotExist, TypeError, ValueError, OverflowError):
        raise NotFound(f"No claim with id {claim_id}.") from None


def find_claim(story, todolist):
    try:
        return Claim.objects.get(story=story, todolist=todolist)
    except Claim.DoesNotExist:
        raise NotFound(f"No claim on {story}/{todolist}.") from None


def get_approval(approval_id, *, lock=False):
    """The request with ``approval_id``; ``lock`` holds its row until the transaction ends."""
    queryset = ApprovalRequest.objects.select_for_update() if lock else ApprovalRequest.objects
    try:
        return queryset.get(pk=approval_id)
    except (ApprovalRequest.DoesNotExist, ValidationError, ValueError, TypeError):
        # A string that is not a UUID at all is just as unknown as one that matches nothing.
        raise NotFound(f"No approval request with id {approval_id}.") from None


def id_prefix(text: str) -> str | None:
    """``text`` as the start of a request id (lower-case hex, no dashes), or None if it is not
    one: fewer than ``MIN_ID_PREFIX`` characters, or not hexadecimal."""
    cleaned = text.strip().lower().replace("-", "")
    if len(cleaned) < MIN_ID_PREFIX or any(c not in "0123456789abcdef" for c in cleaned):
        return None
    return cleaned


def find_approval_by_prefix(prefix: str) -> ApprovalRequest:
    """The one request whose id starts with ``prefix`` (hex, at least six characters)."""
    cleaned = id_prefix(prefix)
    if cleaned is None:
        raise InvalidInput(
            {"id": f"give at least {MIN_ID_PREFIX} hexadecimal characters of the request id"}
        )
    matches = list(approvals_with_id_prefix(cleaned)[:2])
    if not matches:
        raise NotFound(f"No approval request with an id starting {cleaned}.")
    if len(matches) > 1:
        raise InvalidInput({"id": f"{cleaned} matches more than one request; give more characters"})
    return matches[0]


def approvals_with_id_prefix(prefix):
    """Requests whose id starts with ``prefix``, hexadecimal digits without dashes."""
    # Ids sort like their hex digits, so a prefix is a range query on the primary key.
    lowest = uuid.UUID(prefix[:32].ljust(32, "0"))
    highest = uuid.UUID(prefix[:32].ljust(32, "f"))
    return ApprovalRequest.objects.filter(id__gte=lowest, id__lte=highest)


def pending_approvals():
    return ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING).order_by(
        "created_at"
    )


def overdue_approvals(now=None):
    """Pending or postponed requests whose time to be decided has passed."""
    return ApprovalRequest.objects.filter(
        status__in=ApprovalRequest.AWAITING_DECISION,
        expires_at__lte=now or timezone.now(),
    )
