"""What happens to claims and approval requests.

Every function here is one transaction: the change, its audit event and any outbound message
commit together or not at all. Admin actions, API views, commands and Telegram handlers call these
functions and nothing else, so a rule lives in exactly one place.
"""

import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeVar, cast

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from audit.services import record
from backoffice.actors import Actor
from backoffice.errors import DomainError, InvalidInput, InvalidTransition, NotPermitted
from backoffice.limits import max_length
from backoffice.timestamps import iso_utc

from . import events, policies, voting
from .errors import ClaimConflict, Frozen, NotHolder, StaleFence
from .lease_tokens import new_lease_token
from .models import ApprovalPolicy, ApprovalRequest, Claim, ClaimWaiter, Decision, Vote
from .representation import approval_data, claim_data
from .selectors import find_claim, get_approval, get_claim, overdue_approvals, votes_with_voters

Status = ApprovalRequest.Status
T = TypeVar("T")

# What a lease is given to: the checked user, the labels they chose, and for how long.
Holder = dict[str, Any]

DECIDE_PERMISSION = "claims.decide_approvalrequest"
ARCHIVE_PERMISSION = "claims.archive_approvalrequest"
FORCE_RELEASE_PERMISSION = "claims.force_release_claim"

# Waiting in line: how often a waiter looks whether its turn came, how often it says it is still
# there, and after how long without a word it is dropped from the line.
WAIT_POLL_INTERVAL = 0.1
WAITER_RENEW_EVERY = 2.0
WAITER_TIMEOUT = 10.0


class Granted(NamedTuple):
    """The claim after ``claim()`` and what happened: acquired, refreshed or taken_over.

    ``lease_token`` is the secret proving holdership, set when a lease was granted (not on a
    refresh). It is shown to the caller in this answer and never again.
    """

    claim: Claim
    outcome: str
    lease_token: str = ""


class Released(NamedTuple):
    """The claim after a forced release or an unfreeze, and whether this call changed it."""

    claim: Claim
    changed: bool


class Decided(NamedTuple):
    """The request after a decision or a vote, whether this call changed it, and the votes."""

    approval: ApprovalRequest
    changed: bool
    tally: voting.Tally | None = None


# --- Claims ---------------------------------------------------------------------------------


def _text(
    fields: dict[str, str], name: str, value: Any, limit: int, *, required: bool = True
) -> Any:
    value = (value or "").strip() if isinstance(value, str) or value is None else value
    if not isinstance(value, str):
        fields[name] = "must be text"
    elif not value and required:
        fields[name] = "must not be empty"
    elif len(value) > limit:
        fields[name] = f"must be at most {limit} characters"
    return value


def _ttl(fields: dict[str, str], ttl_seconds: Any, default: int | None = None) -> Any:
    if ttl_seconds is None:
        return default or settings.CLAIM_DEFAULT_TTL
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int):
        fields["ttl_seconds"] = "must be a whole number of seconds"
    elif not 0 < ttl_seconds <= settings.CLAIM_MAX_TTL:
        fields["ttl_seconds"] = f"must be between 1 and {settings.CLAIM_MAX_TTL} seconds"
    return ttl_seconds


def _fencing_token(fields: dict[str, str], fencing_token: Any) -> Any:
    if fencing_token is not None and (
        isinstance(fencing_token, bool) or not isinstance(fencing_token, int) or fencing_token < 0
    ):
        fields["fencing_token"] = "must be a whole number, 0 or more"  # noqa: S105
    return fencing_token


def _owner(fields: dict[str, str], actor: Actor) -> User | None:
    """The user a lease or a request belongs to: always one the channel checked."""
    user = actor.authenticated_user
    if user is None or not user.is_active:
        fields["user"] = "a lease is held by an active user; name one"
        return None
    return user


def _claim_details(claim: Claim, **extra: Any) -> dict[str, Any]:
    """What the audit trail keeps of a claim: its representation, as every channel shows it."""
    return {**claim_data(claim), **extra}


def _new_lease(holder: Holder, now: datetime) -> tuple[str, dict[str, Any]]:
    """The fields that give a lease to ``holder`` from ``now``, and its new lease token, which
    only the caller's answer carries."""
    lease_token, token_hash = new_lease_token()
    return lease_token, {
        "lease_token_hash": token_hash,
        "owner": holder["owner_user"].get_username(),
        "owner_user": holder["owner_user"],
        "agent_id": holder["agent_id"],
        "fingerprint": holder["fingerprint"],
        "ttl_seconds": holder["ttl_seconds"],
        "acquired_at": now,
        "expires_at": now + timedelta(seconds=holder["ttl_seconds"]),
        "released_at": None,
    }


def _hand_over(claim: Claim, holder: Holder, now: datetime) -> str:
    """Give ``claim`` to a new holder with a new lease token and the next fencing token.

    Returns the lease token, which only the caller's answer carries.
    """
    lease_token, lease = _new_lease(holder, now)
    claim.previous_owner, claim.previous_agent_id = claim.owner, claim.agent_id
    for name, value in lease.items():
        setattr(claim, name, value)
    claim.fencing_token += 1
    claim.version += 1
    claim.save()
    return lease_token


def _line(claim: Claim, now: datetime) -> Any:
    """The waiters still in line for ``claim``, first first; those that stopped polling are not."""
    return ClaimWaiter.objects.filter(claim=claim, seen_until__gt=now).order_by("id")


@transaction.atomic
def _try_claim(
    story: str,
    todolist: str,
    holder: Holder,
    lease_token: str,
    ticket: int | None,
    actor: Actor,
) -> Granted:
    """One attempt at ``claim()``: grant, refresh or take over, or raise why not."""
    now = timezone.now()
    token, lease = _new_lease(holder, now)
    current, created = Claim.objects.select_for_update().get_or_create(
        story=story, todolist=todolist, defaults={**lease, "fencing_token": 1}
    )
    if created:
        record("claim.acquired", actor=actor, obj=current, details=_claim_details(current))
        events.publish(events.ClaimAcquired(actor, current))
        return Granted(current, "acquired", token)
    if current.frozen:
        raise Frozen(current)
    if current.is_live(now):
        if not lease_token:
            raise ClaimConflict(current, waiting=_line(current, now).count())
        if not current.proves(lease_token):
            raise NotHolder(f"That lease token does not hold {current.work_item}.")
        _extend(current, holder["ttl_seconds"], now)
        record("claim.refreshed", actor=actor, obj=current, details=_claim_details(current))
        events.publish(events.ClaimRefreshed(actor, current))
        return Granted(current, "refreshed")
    line = _line(current, now)
    first = line.first()
    if first is not None and first.pk != ticket:
        raise ClaimConflict(current, waiting=line.count())
    ClaimWaiter.objects.filter(claim=current, seen_until__lte=now).delete()
    if ticket is not None:
        ClaimWaiter.objects.filter(pk=ticket).delete()
    was_released = current.released_at is not None
    token = _hand_over(current, holder, now)
    if was_released:
        record("claim.acquired", actor=actor, obj=current, details=_claim_details(current))
        events.publish(events.ClaimAcquired(actor, current))
        return Granted(current, "acquired", token)
    current.takeovers += 1
    current.save(update_fields=["takeovers"])
    record("claim.taken_over", actor=actor, obj=current, details=_claim_details(current))
    events.publish(
        events.ClaimTakenOver(actor, current, current.previous_owner, current.previous_agent_id)
    )
    return Granted(current, "taken_over", token)


def _join_line(story: str, todolist: str, holder: Holder, now: datetime) -> int:
    """Queue for the work item in its own committed transaction; returns the waiter's id."""
    with transaction.atomic():
        claim = Claim.objects.get(story=story, todolist=todolist)
        return ClaimWaiter.objects.create(
            claim=claim,
            owner=holder["owner_user"].get_username(),
            agent_id=holder["agent_id"],
            joined_at=now,
            seen_until=now + timedelta(seconds=WAITER_TIMEOUT),
        ).pk


def _may_be_served(story: str, todolist: str, ticket: int) -> bool:
    """A read without locks: is the lease over and this waiter first in line?"""
    now = timezone.now()
    claim = Claim.objects.filter(story=story, todolist=todolist).first()
    if claim is None or claim.frozen or claim.is_live(now):
        return False
    first = (
        ClaimWaiter.objects.filter(claim=claim, seen_until__gt=now)
        .order_by("id")
        .values_list("pk", flat=True)
        .first()
    )
    return first in (None, ticket)


def claim(
    *,
    story: str,
    todolist: str,
    agent_id: str,
    fingerprint: str = "",
    ttl_seconds: int | None = None,
    lease_token: str = "",
    wait: float = 0,
    actor: Actor,
) -> Granted:
    """Grant the lease on (story, todolist) to ``actor.user``, or refresh it for its holder.

    Refreshing needs the lease token handed out with the lease; without it a live lease is a
    ``ClaimConflict`` whoever asks (audited as ``claim.conflict`` once the caller stops waiting,
    so conflicts can be counted), and a wrong token is refused (``NotHolder``) and audited. An
    expired or released lease is taken over by the first in line. With ``wait`` seconds the
    caller queues for a busy work item and is served in arrival order; giving up leaves the line.
    Safe under concurrency: the row is locked, and a race to create it is settled by the unique
    constraint.
    """
    fields: dict[str, str] = {}
    story = _text(fields, "story", story, max_length(Claim, "story"))
    todolist = _text(fields, "todolist", todolist, max_length(Claim, "todolist"))
    holder = {
        "owner_user": _owner(fields, actor),
        "agent_id": _text(fields, "agent_id", agent_id, max_length(Claim, "agent_id")),
        "fingerprint": _text(
            fields, "fingerprint", fingerprint, max_length(Claim, "fingerprint"), required=False
        ),
        "ttl_seconds": _ttl(fields, ttl_seconds),
    }
    if isinstance(wait, bool) or not isinstance(wait, int | float) or wait < 0:
        fields["wait"] = "must be a number of seconds, 0 or more"
    elif wait and transaction.get_connection().in_atomic_block:
        fields["wait"] = "cannot wait inside a transaction (or with an Idempotency-Key)"
    if fields:
        raise InvalidInput(fields)
    deadline = time.monotonic() + wait
    ticket = None
    try:
        while True:
            try:
                return _try_claim(story, todolist, holder, lease_token, ticket, actor)
            except NotHolder as refused:
                claimed = Claim.objects.get(story=story, todolist=todolist)
                _audit_refusal(refused, actor, claim=claimed, operation="claim")
                raise
            except ClaimConflict as conflict:
                if time.monotonic() >= deadline:
                    claimed = Claim.objects.get(story=story, todolist=todolist)
                    _audit_refusal(
                        conflict, actor, claim=claimed, operation="claim", action="claim.conflict"
                    )
                    raise
            ticket = _wait_in_line(story, todolist, holder, ticket, deadline)
    finally:
        if ticket is not None:
            ClaimWaiter.objects.filter(pk=ticket).delete()


def _wait_in_line(
    story: str, todolist: str, holder: Holder, ticket: int | None, deadline: float
) -> int:
    """Join the line (first call), then poll until this waiter may be served or time is up."""
    if ticket is None:
        ticket = _join_line(story, todolist, holder, timezone.now())
    renewed = time.monotonic()
    while time.monotonic() < deadline:
        if _may_be_served(story, todolist, ticket):
            return ticket
        time.sleep(min(WAIT_POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
        if time.monotonic() - renewed >= WAITER_RENEW_EVERY:
            ClaimWaiter.objects.filter(pk=ticket).update(
                seen_until=timezone.now() + timedelta(seconds=WAITER_TIMEOUT)
            )
            renewed = time.monotonic()
    return ticket


def _extend(claim: Claim, ttl_seconds: int, now: datetime) -> None:
    claim.ttl_seconds = ttl_seconds
    claim.expires_at = now + timedelta(seconds=ttl_seconds)
    claim.version += 1
    claim.save(update_fields=["ttl_seconds", "expires_at", "version", "updated_at"])


def _check_proof(claim: Claim, lease_token: str, fencing_token: int | None) -> None:
    """Refuse a caller whose fencing token is stale or whose lease token is not this lease's."""
    if fencing_token is not None and fencing_token != claim.fencing_token:
        raise StaleFence(claim, fencing_token)
    if not claim.proves(lease_token):
        raise NotHolder(f"That lease token does not hold {claim.work_item}.")


def _audit_refusal(
    error: DomainError,
    actor: Actor,
    *,
    operation: str,
    claim: Claim,
    action: str = "claim.refused",
) -> None:
    """Record a refused proof or a conflict, with the caller's own identity, in a transaction of
    its own: the attempt's transaction was rolled back, and the refusal must outlive it."""
    with transaction.atomic():
        record(
            action,
            actor=actor,
            obj=claim,
            details={"operation": operation, "error": error.code, "detail": error.message},
        )


def _under_lease(
    claim_id: object,
    lease_token: str,
    fencing_token: int | None,
    actor: Actor,
    operation: str,
    change: Callable[[Claim], T],
) -> T:
    """Lock the claim, check the caller's proof and apply ``change``; a refusal is audited."""
    try:
        with transaction.atomic():
            claim = get_claim(claim_id, lock=True)
            _check_proof(claim, lease_token, fencing_token)
            return change(claim)
    except (NotHolder, StaleFence) as refused:
        _audit_refusal(refused, actor, claim=get_claim(claim_id), operation=operation)
        raise


def _proof_fields(fields: dict[str, str], lease_token: Any, fencing_token: Any) -> None:
    if not isinstance(lease_token, str) or not lease_token.strip():
        fields["lease_token"] = "give the token handed out with the lease"  # noqa: S105
    _fencing_token(fields, fencing_token)


def refresh(
    claim_id: object,
    *,
    lease_token: str,
    fencing_token: int | None = None,
    ttl_seconds: int | None = None,
    actor: Actor,
) -> Claim:
    """Extend the holder's lease from now; without a TTL it keeps the one it has."""
    fields: dict[str, str] = {}
    ttl_seconds = _ttl(fields, ttl_seconds, default=-1)
    _proof_fields(fields, lease_token, fencing_token)
    if fields:
        raise InvalidInput(fields)

    def extend(claim: Claim) -> Claim:
        if not claim.is_live():
            raise NotHolder(f"The lease on {claim.work_item} has ended; claim it again.")
        _extend(claim, claim.ttl_seconds if ttl_seconds == -1 else ttl_seconds, timezone.now())
        record("claim.refreshed", actor=actor, obj=claim, details=_claim_details(claim))
        events.publish(events.ClaimRefreshed(actor, claim))
        return claim

    return _under_lease(claim_id, lease_token, fencing_token, actor, "refresh", extend)


def release(
    claim_id: object, *, lease_token: str, fencing_token: int | None = None, actor: Actor
) -> Claim:
    """End the holder's lease. Releasing a lease already released changes nothing."""
    fields: dict[str, str] = {}
    _proof_fields(fields, lease_token, fencing_token)
    if fields:
        raise InvalidInput(fields)

    def end(claim: Claim) -> Claim:
        if claim.released_at is None:
            _end(claim)
            record("claim.released", actor=actor, obj=claim, details=_claim_details(claim))
            events.publish(events.ClaimReleased(actor, claim))
        return claim

    return _under_lease(claim_id, lease_token, fencing_token, actor, "release", end)


def check_fence(*, story: str, todolist: str, fencing_token: int | None, actor: Actor) -> Claim:
    """Whether ``fencing_token`` is still the live lease's on (story, todolist).

    Answers the claim when it is; raises ``StaleFence`` (audited) when the lease was lost.
    """
    fields: dict[str, str] = {}
    story = _text(fields, "story", story, max_length(Claim, "story"))
    todolist = _text(fields, "todolist", todolist, max_length(Claim, "todolist"))
    if fencing_token is None:
        fields["fencing_token"] = "give the fencing token to check"  # noqa: S105
    _fencing_token(fields, fencing_token)
    if fields or fencing_token is None:
        raise InvalidInput(fields)
    claim = find_claim(story, todolist)
    if claim.fencing_token == fencing_token and claim.is_live():
        return claim
    stale = StaleFence(claim, fencing_token)
    _audit_refusal(stale, actor, claim=claim, operation="check")
    raise stale


def _end(claim: Claim) -> None:
    # The token's hash stays, so that its holder may release again without an error; a released
    # lease is never refreshed, and the next grant replaces the hash.
    claim.released_at = timezone.now()
    claim.version += 1
    claim.save(update_fields=["released_at", "version", "updated_at"])


def _require(actor: Actor, permission: str, doing: str) -> None:
    if not actor.has_perm(permission):
        raise NotPermitted(f"{actor.name} may not {doing}.")


def _reason(reason: Any) -> str:
    fields: dict[str, str] = {}
    reason = _text(fields, "reason", reason, max_length(Claim, "frozen_reason"))
    if fields:
        raise InvalidInput(fields)
    return reason


@transaction.atomic
def force_release(claim_id: object, *, actor: Actor, reason: str) -> Released:
    """Staff end someone else's lease; the audit event names the staff user and why."""
    _require(actor, FORCE_RELEASE_PERMISSION, "force-release claims")
    reason = _reason(reason)
    claim = get_claim(claim_id, lock=True)
    if claim.released_at is not None:
        return Released(claim, False)
    _end(claim)
    record(
        "claim.force_released", actor=actor, obj=claim, details=_claim_details(claim, note=reason)
    )
    events.publish(events.ClaimReleased(actor, claim, forced=True))
    return Released(claim, True)


@transaction.atomic
def take_over(
    claim_id: object, *, actor: Actor, reason: str, ttl_seconds: int | None = None
) -> Granted:
    """Staff take a lease for themselves, live or not; returns the grant with its lease token."""
    _require(actor, FORCE_RELEASE_PERMISSION, "take over claims")
    reason = _reason(reason)
    fields: dict[str, str] = {}
    holder = {
        "owner_user": _owner(fields, actor),
        "agent_id": actor.source,
        "fingerprint": actor.source,
        "ttl_seconds": _ttl(fields, ttl_seconds),
    }
    if fields:
        raise InvalidInput(fields)
    claim = get_claim(claim_id, lock=True)
    token = _hand_over(claim, holder, timezone.now())
    claim.takeovers += 1
    claim.save(update_fields=["takeovers"])
    record("claim.taken_over", actor=actor, obj=claim, details=_claim_details(claim, note=reason))
    events.publish(
        events.ClaimTakenOver(actor, claim, claim.previous_owner, claim.previous_agent_id)
    )
    return Granted(claim, "taken_over", token)


@transaction.atomic
def freeze(claim_id: object, *, actor: Actor, reason: str) -> Claim:
    """Staff stop anyone claiming the work item until it is unfrozen; a live lease runs on."""
    _require(actor, FORCE_RELEASE_PERMISSION, "freeze claims")
    reason = _reason(reason)
    claim = get_claim(claim_id, lock=True)
    claim.frozen_at = timezone.now()
    claim.frozen_by = actor.authenticated_user
    claim.frozen_reason = reason
    claim.version += 1
    claim.save(update_fields=["frozen_at", "frozen_by", "frozen_reason", "version", "updated_at"])
    record("claim.frozen", actor=actor, obj=claim, details=_claim_details(claim, note=reason))
    events.publish(events.ClaimFrozen(actor, claim))
    return claim


@transaction.atomic
def unfreeze(claim_id: object, *, actor: Actor) -> Released:
    """Let the work item be claimed again. Unfreezing twice changes nothing."""
    _require(actor, FORCE_RELEASE_PERMISSION, "unfreeze claims")
    claim = get_claim(claim_id, lock=True)
    if not claim.frozen:
        return Released(claim, False)
    claim.frozen_at, claim.frozen_by, claim.frozen_reason = None, None, ""
    claim.version += 1
    claim.save(update_fields=["frozen_at", "frozen_by", "frozen_reason", "version", "updated_at"])
    record("claim.unfrozen", actor=actor, obj=claim, details=_claim_details(claim))
    events.publish(events.ClaimUnfrozen(actor, claim))
    return Released(claim, True)


# --- Approval requests ----------------------------------------------------------------------


def _approval_details(approval: ApprovalRequest, **extra: Any) -> dict[str, Any]:
    """What the audit trail keeps of a request: its representation, as every channel shows it."""
    return {**approval_data(approval), **extra}


@transaction.atomic
def request_approval(
    *,
    kind: str,
    text: str,
    actor: Actor,
    agent_id: str = "",
    claim_id: object = None,
    payload: dict[str, Any] | None = None,
) -> ApprovalRequest:
    """Ask the approvers a question as ``actor.user``, under the policy that applies to it.

    ``agent_id`` is a label for the agent asking on the user's behalf. The policy's rules are
    copied onto the request; it expires after the policy's deadline (``APPROVAL_EXPIRY`` under
    the default policy).
    """
    fields: dict[str, str] = {}
    if kind not in ApprovalRequest.Kind.values:
        fields["kind"] = f"must be one of {', '.join(ApprovalRequest.Kind.values)}"
    text = _text(fields, "text", text, max_length(ApprovalRequest, "text"))
    user = _owner(fields, actor)
    agent_id = _text(
        fields, "agent_id", agent_id, max_length(ApprovalRequest, "agent_id"), required=False
    )
    if payload is not None and not isinstance(payload, dict):
        fields["payload"] = "must be an object"
    if fields or user is None:
        raise InvalidInput(fields)
    linked_claim = None if claim_id is None else get_claim(claim_id)
    policy = policies.policy_for(kind, policies.story_of(linked_claim, payload))
    rules = policies.Rules.of(policy)
    approval = ApprovalRequest.objects.create(
        kind=kind,
        text=text,
        payload=payload or {},
        requested_by=user.get_username(),
        agent_id=agent_id,
        requested_by_user=user,
        claim=linked_claim,
        policy=policy,
        rules=rules.as_dict(),
        **rules.timetable(timezone.now()),
    )
    record("approval.requested", actor=actor, obj=approval, details=_approval_details(approval))
    events.publish(events.ApprovalRequested(actor, approval))
    return approval


# The status each decision leads to, and the statuses it may be taken from.
DECISIONS = {
    Decision.APPROVE: (Status.APPROVED, ApprovalRequest.AWAITING_DECISION),
    Decision.DENY: (Status.DENIED, ApprovalRequest.AWAITING_DECISION),
    Decision.POSTPONE: (Status.POSTPONED, {Status.PENDING}),
    Decision.REOPEN: (Status.PENDING, {Status.POSTPONED}),
}


@transaction.atomic
def decide(approval_id: uuid.UUID | str, decision: str, *, actor: Actor, note: str = "") -> Decided:
    """Vote to approve or deny a request, or postpone or reopen it.

    Approve and deny are votes, one per approver, changeable until the request is decided; the
    vote that meets the policy's quorum (or a veto) decides the request in the same transaction.
    Voting the same way twice changes nothing and writes no second event; any decision on a
    request already decided another way raises ``InvalidTransition``. The row is locked, so of
    two concurrent last votes exactly one decides.
    """
    if decision not in Decision.values:
        raise InvalidInput({"decision": f"must be one of {', '.join(Decision.values)}"})
    decision = Decision(decision)
    note_limit = max_length(ApprovalRequest, "decision_note")
    if len(note) > note_limit:
        raise InvalidInput({"note": f"must be at most {note_limit} characters"})
    _require(actor, DECIDE_PERMISSION, "decide approval requests")
    approval = get_approval(approval_id, lock=True)
    # Every answer shows the votes; read them once, with their voters, under the lock.
    votes = votes_with_voters(approval)
    target, allowed_from = DECISIONS[decision]
    if approval.status == target:
        return Decided(approval, False, voting.tally(approval, waiting=False))
    if approval.status not in allowed_from:
        raise InvalidTransition(
            f"Request {approval.short_id} is {approval.status}; it cannot be {target} now.",
            status=approval.status,
        )
    now = timezone.now()
    if approval.expires_at <= now:
        raise InvalidTransition(
            f"Request {approval.short_id} expired at {iso_utc(approval.expires_at)}.",
            status=approval.status,
        )
    refusal = policies.refusal(approval, actor.user)
    if refusal:
        raise NotPermitted(refusal)
    if decision in Vote.Choice.values:
        return _vote(approval, votes, decision, actor=actor, note=note)
    return Decided(_settle(approval, decision, actor=actor, note=note, now=now), True)


def _vote(
    approval: ApprovalRequest, votes: list[Vote], choice: str, *, actor: Actor, note: str
) -> Decided:
    """Count ``actor``'s vote; decide the request when it meets the quorum or vetoes.

    ``decide`` holds the request's row, so no other vote on it comes between reading its
    ``votes`` and writing this voter's: a plain INSERT does, without get_or_create's savepoint.
    The new vote joins the list kept on the request for everything that shows the votes until
    the answer.
    """
    # policies.refusal() let only a signed-in person this far.
    voter = cast(User, actor.authenticated_user)
    vote = next((vote for vote in votes if vote.voter_id == voter.pk), None)
    if vote is not None and vote.choice == choice:
        return Decided(approval, False, voting.tally(approval))
    previous_choice = "" if vote is None else vote.choice
    if vote is None:
        vote = Vote.objects.create(
            approval=approval,
            voter=voter,
            choice=choice,
            source=actor.source,
            note=note,
        )
        votes.append(vote)
    else:
        vote.choice, vote.source, vote.note = choice, actor.source, note
        vote.save(update_fields=["choice", "source", "note", "updated_at"])
    counted = voting.tally(approval, waiting=False)
    if counted.outcome:
        decision = Decision(counted.outcome)
        settled = _settle(approval, decision, actor=actor, note=note, now=timezone.now())
        return Decided(settled, True, counted)
    counted = voting.tally(approval)
    approval.save(update_fields=["updated_at"])
    record(
        "approval.voted",
        actor=actor,
        obj=approval,
        details=_approval_details(approval, choice=choice, previous_choice=previous_choice),
    )
    events.publish(events.VoteCounted(actor, approval, vote, counted))
    return Decided(approval, True, counted)


def _settle(
    approval: ApprovalRequest, decision: Decision, *, actor: Actor, note: str, now: datetime
) -> ApprovalRequest:
    """Move ``approval`` to the status ``decision`` leads to, audited and announced."""
    previous = approval.status
    approval.status = DECISIONS[decision][0]
    reopened = decision == Decision.REOPEN
    approval.decided_by = None if reopened else actor.authenticated_user
    approval.decided_at = None if reopened else now
    approval.decision_source = "" if reopened else actor.source
    approval.decision_note = note
    approval.save(
        update_fields=[
            "status",
            "decided_by",
            "decided_at",
            "decision_source",
            "decision_note",
            "updated_at",
        ]
    )
    record(
        f"approval.{decision.label}",
        actor=actor,
        obj=approval,
        details=_approval_details(approval, previous_status=previous),
    )
    events.publish(events.ApprovalDecided(actor, approval, decision, previous))
    return approval


@transaction.atomic
def mark_executed(approval_id: uuid.UUID | str, *, actor: Actor) -> Decided:
    """Record that what an approved request asked for was done. Reporting twice changes nothing."""
    approval = get_approval(approval_id, lock=True)
    if approval.status == Status.EXECUTED:
        return Decided(approval, False)
    if approval.status != Status.APPROVED:
        raise InvalidTransition(
            f"Request {approval.short_id} is {approval.status}; only an approved request can be "
            "executed.",
            status=approval.status,
        )
    approval.status = Status.EXECUTED
    approval.executed_at = timezone.now()
    approval.save(update_fields=["status", "executed_at", "updated_at"])
    record(
        "approval.executed",
        actor=actor,
        obj=approval,
        details=_approval_details(approval, previous_status=Status.APPROVED),
    )
    events.publish(events.ApprovalExecuted(actor, approval))
    return Decided(approval, True)


ARCHIVABLE = {Status.APPROVED, Status.DENIED, Status.EXPIRED, Status.EXECUTED}


@transaction.atomic
def archive(approval_id: uuid.UUID | str, *, actor: Actor) -> Decided:
    """File away a request that is finished with. Archiving twice changes nothing."""
    _require(actor, ARCHIVE_PERMISSION, "archive approval requests")
    approval = get_approval(approval_id, lock=True)
    if approval.status == Status.ARCHIVED:
        return Decided(approval, False)
    if approval.status not in ARCHIVABLE:
        raise InvalidTransition(
            f"Request {approval.short_id} is {approval.status}; decide it before archiving.",
            status=approval.status,
        )
    previous = approval.status
    approval.status = Status.ARCHIVED
    approval.archived_at = timezone.now()
    approval.save(update_fields=["status", "archived_at", "updated_at"])
    record(
        "approval.archived",
        actor=actor,
        obj=approval,
        details=_approval_details(approval, previous_status=previous),
    )
    events.publish(events.ApprovalArchived(actor, approval, previous))
    return Decided(approval, True)


def expire_overdue(*, actor: Actor, now: datetime | None = None) -> list[ApprovalRequest]:
    """Apply the policy's default outcome to every undecided request past its deadline.

    Expire (the default policy), deny, or approve when nobody objected on a low-risk kind: a
    default decision is audited as such, by the system, never as a person's. Each request is its
    own transaction, so one failure does not hold back the rest; returns the requests settled.
    """
    now = now or timezone.now()
    settled = []
    for approval_id in overdue_approvals(now).values_list("id", flat=True):
        with transaction.atomic():
            approval = (
                ApprovalRequest.objects.select_for_update()
                .filter(
                    pk=approval_id,
                    status__in=ApprovalRequest.AWAITING_DECISION,
                    expires_at__lte=now,
                )
                .first()
            )
            if approval is None:
                continue
            _default_outcome(approval, actor=actor, now=now)
            settled.append(approval)
    return settled


DEFAULT_DECISIONS = {
    ApprovalPolicy.Outcome.EXPIRE: (Status.EXPIRED, "approval.expired"),
    ApprovalPolicy.Outcome.DENY: (Status.DENIED, "approval.denied_by_default"),
    ApprovalPolicy.Outcome.APPROVE: (Status.APPROVED, "approval.approved_by_default"),
}


def _default_outcome(approval: ApprovalRequest, *, actor: Actor, now: datetime) -> None:
    rules = policies.Rules.from_request(approval)
    outcome = ApprovalPolicy.Outcome(rules.default_outcome)
    denied = approval.votes.filter(choice=Vote.Choice.DENY).exists()
    objected = denied or approval.status != Status.PENDING
    if outcome == ApprovalPolicy.Outcome.APPROVE and (objected or not rules.low_risk):
        # A deny vote or a postponement is an objection: the safe default applies instead.
        outcome = ApprovalPolicy.Outcome.EXPIRE
    previous = approval.status
    approval.status, action = DEFAULT_DECISIONS[outcome]
    if outcome != ApprovalPolicy.Outcome.EXPIRE:
        approval.decided_by = None
        approval.decided_at = now
        approval.decision_source = ApprovalRequest.DecisionSource.DEFAULT
        approval.decision_note = (
            f"Nobody decided by the deadline: default outcome of the policy "
            f"{rules.policy or '(built-in default)'}."
        )
    approval.save()
    record(
        action,
        actor=actor,
        obj=approval,
        details=_approval_details(
            approval,
            previous_status=previous,
            default_decision=outcome != ApprovalPolicy.Outcome.EXPIRE,
        ),
    )
    if outcome == ApprovalPolicy.Outcome.EXPIRE:
        events.publish(events.ApprovalExpired(actor, approval, previous))
    else:
        events.publish(events.ApprovalDefaulted(actor, approval, outcome, previous))


# --- Approval policies ----------------------------------------------------------------------


def _policy_details(policy: ApprovalPolicy, **extra: Any) -> dict[str, Any]:
    return {
        "name": policy.name,
        "kind": policy.kind,
        "story_pattern": policy.story_pattern,
        "rules": policies.Rules.of(policy).as_dict(),
        **extra,
    }


@transaction.atomic
def save_policy(
    policy: ApprovalPolicy,
    *,
    approver_groups: Iterable[Group],
    actor: Actor,
    changed: Iterable[str] = (),
) -> ApprovalPolicy:
    """Create or change a policy and audit it; requests already open keep the rules they copied."""
    created = policy.pk is None
    _require(
        actor,
        "claims.add_approvalpolicy" if created else "claims.change_approvalpolicy",
        "manage approval policies",
    )
    try:
        policy.full_clean()
    except ValidationError as invalid:
        fields = {name: " ".join(texts) for name, texts in invalid.message_dict.items()}
        raise InvalidInput(fields) from None
    policy.save()
    policy.approver_groups.set(approver_groups)
    record(
        "policy.created" if created else "policy.changed",
        actor=actor,
        obj=policy,
        details=_policy_details(policy, changed=sorted(changed)),
    )
    return policy


@transaction.atomic
def delete_policy(policy: ApprovalPolicy, *, actor: Actor) -> None:
    """Remove a policy; the requests that copied its rules keep them."""
    _require(actor, "claims.delete_approvalpolicy", "manage approval policies")
    details = _policy_details(policy)
    object_id = policy.pk
    policy.delete()
    record(
        "policy.deleted",
        actor=actor,
        object_type="claims.approvalpolicy",
        object_id=object_id,
        details=details,
    )
