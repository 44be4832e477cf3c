"""Reading claims and approval requests."""

import uuid
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db.models import (
    Count,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from backoffice.errors import InvalidInput, NotFound

from .models import ApprovalRequest, Claim, ClaimWaiter, Vote

MIN_ID_PREFIX = 6


def get_claim(claim_id: object, *, lock: bool = False) -> Claim:
    """The claim with ``claim_id``; ``lock`` holds its row until the caller's transaction ends."""
    queryset = Claim.objects.select_for_update() if lock else Claim.objects
    try:
        if isinstance(claim_id, bool) or not str(claim_id).isdigit():
            raise ValueError(claim_id)
        return queryset.get(pk=int(str(claim_id)))
    except (Claim.DoesNotExist, TypeError, ValueError, OverflowError):
        raise NotFound(f"No claim with id {claim_id}.") from None


def waiting_line(claim: Claim, now: datetime | None = None) -> QuerySet[ClaimWaiter]:
    """Who waits for ``claim`` now, first in line first."""
    return claim.waiters.filter(seen_until__gt=now or timezone.now()).order_by("id")


def with_waiting_count(claims: QuerySet[Claim], now: datetime | None = None) -> QuerySet[Claim]:
    """``claims`` annotated with ``waiting``, how many wait in line for each now.

    A correlated subquery, so a page of a long list counts the waiters of its own rows only.
    """
    waiters = (
        ClaimWaiter.objects.filter(claim=OuterRef("pk"), seen_until__gt=now or timezone.now())
        .order_by()
        .values("claim")
        .annotate(count=Count("pk"))
        .values("count")
    )
    return claims.annotate(waiting=Coalesce(Subquery(waiters), 0))


def stale_claims(now: datetime | None = None) -> QuerySet[Claim]:
    """Leases staff should look at: expired but never released, held a day or more, or taken
    over three times or more."""
    now = now or timezone.now()
    expired = Claim.objects.ended(now).filter(released_at__isnull=True)
    return Claim.objects.filter(
        Q(pk__in=expired.values("pk"))
        | Q(released_at__isnull=True, acquired_at__lte=now - timedelta(days=1))
        | Q(takeovers__gte=3)
    )


def find_claim(story: str, todolist: str) -> Claim:
    try:
        return Claim.objects.get(story=story, todolist=todolist)
    except Claim.DoesNotExist:
        raise NotFound(f"No claim on {story}/{todolist}.") from None


# The rows every read of a request brings along in its one query: its requester and decider,
# whom every change and every answer shows, and what channels add with ``read_with_approvals``.
_APPROVAL_RELATIONS = ["requested_by_user", "decided_by"]


def read_with_approvals(relation: str) -> None:
    """Bring the one-to-one row ``relation`` along with every request read here.

    A channel whose subscriber reads such a row on every change of a request (its callback URL,
    say) calls this in its ``AppConfig.ready()``, and each change costs one query less.
    """
    if relation not in _APPROVAL_RELATIONS:
        _APPROVAL_RELATIONS.append(relation)


def get_approval(approval_id: uuid.UUID | str, *, lock: bool = False) -> ApprovalRequest:
    """The request with ``approval_id``; ``lock`` holds its row until the transaction ends.

    The request comes with its requester, its decider and the rows channels asked for (see
    ``read_with_approvals``): one query rather than several. Only the request's own row is
    locked, not theirs.
    """
    queryset = ApprovalRequest.objects.select_related(*_APPROVAL_RELATIONS)
    if lock:
        queryset = queryset.select_for_update(of=("self",))
    try:
        return queryset.get(pk=approval_id)
    except (ApprovalRequest.DoesNotExist, ValidationError, ValueError, TypeError):
        # A string that is not a UUID at all is just as unknown as one that matches nothing.
        raise NotFound(f"No approval request with id {approval_id}.") from None


def resolve_approval(approval_id: uuid.UUID | str) -> ApprovalRequest:
    """The request with this full id, or with this short id (six or more hex digits), to be
    shown: with its requester, decider and votes, in two queries whatever the number of votes."""
    full_id = _full_id(approval_id)
    if full_id is not None:
        approval = get_approval(full_id)
    else:
        approval = find_approval_by_prefix(_short_id(approval_id))
    votes_with_voters(approval)
    return approval


def approval_id_for(approval_id: uuid.UUID | str) -> uuid.UUID:
    """The id of the request named by a full id or a short one, for a service that looks the
    request up itself (and answers NotFound): a full id costs no query, a short one one."""
    full_id = _full_id(approval_id)
    if full_id is not None:
        return full_id
    return find_approval_by_prefix(_short_id(approval_id)).pk


def _full_id(approval_id: uuid.UUID | str) -> uuid.UUID | None:
    if isinstance(approval_id, uuid.UUID):
        return approval_id
    try:
        return uuid.UUID(str(approval_id))
    except ValueError:
        return None


def _short_id(approval_id: uuid.UUID | str) -> str:
    """``approval_id`` as an id prefix; NotFound when it is neither a full id nor a prefix."""
    prefix = id_prefix(str(approval_id))
    if prefix is None or len(prefix) >= 32:
        raise NotFound(f"No approval request with id {approval_id}.")
    return prefix


def votes_with_voters(approval: ApprovalRequest) -> list[Vote]:
    """Read the votes of ``approval`` and their voters in one query and keep them on it, as
    Django's prefetch does, so the tally, the audit details, the Telegram message and the answer
    that follow a vote read none again. Returns the list kept: a vote written afterwards in the
    transaction is appended to it rather than read back."""
    votes = list(Vote.objects.filter(approval=approval).select_related("voter"))
    kept = approval.votes.all()
    # What prefetch_related_objects sets, which the stubs do not declare.
    kept._result_cache = votes
    kept._prefetch_done = True  # type: ignore[attr-defined]
    approval._prefetched_objects_cache = {  # type: ignore[attr-defined]
        **getattr(approval, "_prefetched_objects_cache", {}),
        "votes": kept,
    }
    return votes


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
    matches = list(approvals_with_id_prefix(cleaned).select_related(*_APPROVAL_RELATIONS)[:2])
    if not matches:
        raise NotFound(f"No approval request with an id starting {cleaned}.")
    if len(matches) > 1:
        raise InvalidInput({"id": f"{cleaned} matches more than one request; give more characters"})
    return matches[0]


def approvals_with_id_prefix(prefix: str) -> QuerySet[ApprovalRequest]:
    """Requests whose id starts with ``prefix``, hexadecimal digits without dashes."""
    # Ids sort like their hex digits, so a prefix is a range query on the primary key.
    lowest = uuid.UUID(prefix[:32].ljust(32, "0"))
    highest = uuid.UUID(prefix[:32].ljust(32, "f"))
    return ApprovalRequest.objects.filter(id__gte=lowest, id__lte=highest)


def pending_approvals() -> QuerySet[ApprovalRequest]:
    return ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING).order_by(
        "created_at"
    )


def overdue_approvals(now: datetime | None = None) -> QuerySet[ApprovalRequest]:
    """Pending or postponed requests whose time to be decided has passed."""
    return ApprovalRequest.objects.filter(
        status__in=ApprovalRequest.AWAITING_DECISION,
        expires_at__lte=now or timezone.now(),
    )
