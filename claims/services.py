"""What happens to claims and approval requests.

Every function here is one transaction: the change, its audit event and any outbound message
commit together or not at all. Admin actions, API views, commands and Telegram handlers call these
functions and nothing else, so a rule lives in exactly one place.
"""

from datetime import timedelta
from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from audit.services import record
from backoffice.errors import InvalidInput, InvalidTransition, NotPermitted

from . import events, policies, voting
from .errors import ClaimConflict, NotHolder
from .models import ApprovalPolicy, ApprovalRequest, Claim, Decision, Vote, max_length
from .selectors import get_approval, get_claim, overdue_approvals

Status = ApprovalRequest.Status

DECIDE_PERMISSION = "claims.decide_approvalrequest"
ARCHIVE_PERMISSION = "claims.archive_approvalrequest"
FORCE_RELEASE_PERMISSION = "claims.force_release_claim"


class Granted(NamedTuple):
    """The claim after ``claim()`` and what happened: acquired, refreshed or taken_over."""

    claim: Claim
    outcome: str


class Released(NamedTuple):
    """The claim after a forced release, and whether this call ended the lease."""

    claim: Claim
    changed: bool


class Decided(NamedTuple):
    """The request after a decision or a vote, whether this call changed it, and the votes."""

    approval: ApprovalRequest
    changed: bool
    tally: voting.Tally | None = None


# --- Claims ---------------------------------------------------------------------------------


def _text(fields, name, value, max_length):
    value = (value or "").strip()
    if not value:
        fields[name] = "must not be empty"
    elif len(value) > max_length:
        fields[name] = f"must be at most {max_length} characters"
    return value


def _ttl(fields, ttl_seconds):
    if ttl_seconds is None:
        return settings.CLAIM_DEFAULT_TTL
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int):
        fields["ttl_seconds"] = "must be a whole number of seconds"
    elif not 0 < ttl_seconds <= settings.CLAIM_MAX_TTL:
        fields["ttl_seconds"] = f"must be between 1 and {settings.CLAIM_MAX_TTL} seconds"
    return ttl_seconds


def _holder_fields(owner, agent_id, fingerprint, ttl_seconds):
    """The cleaned holder of a lease; raises ``InvalidInput`` naming every bad field."""
    fields: dict[str, str] = {}
    holder = {
        "owner": _text(fields, "owner", owner, max_length(Claim, "owner")),
        "agent_id": _text(fields, "agent_id", agent_id, max_length(Claim, "agent_id")),
        "fingerprint": _text(fields, "fingerprint", fingerprint, max_length(Claim, "fingerprint")),
        "ttl_seconds": _ttl(fields, ttl_seconds),
    }
    if fields:
        raise InvalidInput(fields)
    return holder


def _claim_details(claim, **extra):
    return {
        "story": claim.story,
        "todolist": claim.todolist,
        "owner": claim.owner,
        "agent_id": claim.agent_id,
        "ttl_seconds": claim.ttl_seconds,
        "version": claim.version,
        "expires_at": claim.expires_at.isoformat(),
        **extra,
    }


def _hand_over(claim, holder, now):
    """Give ``claim`` to a new holder, remembering the previous one."""
    claim.previous_owner, claim.previous_agent_id = claim.owner, claim.agent_id
    claim.owner = holder["owner"]
    claim.agent_id = holder["agent_id"]
    claim.fingerprint = holder["fingerprint"]
    claim.ttl_seconds = holder["ttl_seconds"]
    claim.acquired_at = now
    claim.expires_at = now + timedelta(seconds=holder["ttl_seconds"])
    claim.released_at = None
    claim.version += 1
    claim.save()


@transaction.atomic
def claim(*, story, todolist, owner, agent_id, fingerprint, ttl_seconds=None, actor):
    """Grant the lease on (story, todolist), or refresh it if the caller already holds it.

    A live lease held by someone else raises ``ClaimConflict``; an expired or released lease is
    taken over. Safe under concurrency: the row is locked, and a race to create it is settled by
    the unique constraint.
    """
    fields: dict[str, str] = {}
    story = _text(fields, "story", story, max_length(Claim, "story"))
    todolist = _text(fields, "todolist", todolist, max_length(Claim, "todolist"))
    try:
        holder = _holder_fields(owner, agent_id, fingerprint, ttl_seconds)
    except InvalidInput as invalid:
        fields.update(invalid.fields)
    if fields:
        raise InvalidInput(fields)
    now = timezone.now()
    current, created = Claim.objects.select_for_update().get_or_create(
        story=story,
        todolist=todolist,
        defaults={
            "acquired_at": now,
            "expires_at": now + timedelta(seconds=holder["ttl_seconds"]),
            **holder,
        },
    )
    if created:
        record("claim.acquired", actor=actor, obj=current, details=_claim_details(current))
        events.publish(events.ClaimAcquired(actor, current))
        return Granted(current, "acquired")

    same_holder = current.is_held_by(agent_id=holder["agent_id"], fingerprint=holder["fingerprint"])
    if current.is_live(now) and not same_holder:
        raise ClaimConflict(current)
    if current.is_live(now):
        _extend(current, holder["ttl_seconds"], now)
        record("claim.refreshed", actor=actor, obj=current, details=_claim_details(current))
        events.publish(events.ClaimRefreshed(actor, current))
        return Granted(current, "refreshed")
    was_released = current.released_at is not None
    _hand_over(current, holder, now)
    if was_released:
        record("claim.acquired", actor=actor, obj=current, details=_claim_details(current))
        events.publish(events.ClaimAcquired(actor, current))
        return Granted(current, "acquired")
    record(
        "claim.taken_over",
        actor=actor,
        obj=current,
        details=_claim_details(
            current,
            previous_owner=current.previous_owner,
            previous_agent_id=current.previous_agent_id,
        ),
    )
    events.publish(
        events.ClaimTakenOver(actor, current, current.previous_owner, current.previous_agent_id)
    )
    return Granted(current, "taken_over")


def _extend(claim, ttl_seconds, now):
    claim.ttl_seconds = ttl_seconds
    claim.expires_at = now + timedelta(seconds=ttl_seconds)
    claim.version += 1
    claim.save(update_fields=["ttl_seconds", "expires_at", "version", "updated_at"])


def _check_holder(claim, agent_id, fingerprint):
    if not claim.is_held_by(agent_id=agent_id, fingerprint=fingerprint):
        raise NotHolder(
            f"{claim.work_item} is held by {claim.owner} (agent {claim.agent_id}), not by you.",
            holder={"owner": claim.owner, "agent_id": claim.agent_id},
        )


@transaction.atomic
def refresh(claim_id, *, agent_id="", fingerprint="", ttl_seconds=None, actor):
    """Extend the holder's lease from now, optionally with a new TTL."""
    fields: dict[str, str] = {}
    ttl_seconds = _ttl(fields, ttl_seconds)
    if not (agent_id or fingerprint):
        fields["agent_id"] = "give the agent id or the fingerprint of the holder"
    if fields:
        raise InvalidInput(fields)
    claim = get_claim(claim_id, lock=True)
    _check_holder(claim, agent_id, fingerprint)
    if claim.released_at is not None:
        raise NotHolder(f"{claim.work_item} was released; claim it again.")
    _extend(claim, ttl_seconds, timezone.now())
    record("claim.refreshed", actor=actor, obj=claim, details=_claim_details(claim))
    events.publish(events.ClaimRefreshed(actor, claim))
    return claim


@transaction.atomic
def release(claim_id, *, agent_id="", fingerprint="", actor):
    """End the holder's lease. Releasing a lease already released changes nothing."""
    if not (agent_id or fingerprint):
        raise InvalidInput({"agent_id": "give the agent id or the fingerprint of the holder"})
    claim = get_claim(claim_id, lock=True)
    _check_holder(claim, agent_id, fingerprint)
    if claim.released_at is None:
        _end(claim)
        record("claim.released", actor=actor, obj=claim, details=_claim_details(claim))
        events.publish(events.ClaimReleased(actor, claim))
    return claim


def _end(claim):
    claim.released_at = timezone.now()
    claim.version += 1
    claim.save(update_fields=["released_at", "version", "updated_at"])


def _require(actor, permission, doing):
    if not actor.has_perm(permission):
        raise NotPermitted(f"{actor.name} may not {doing}.")


@transaction.atomic
def force_release(claim_id, *, actor):
    """Staff end someone else's lease; the audit event names the staff user."""
    _require(actor, FORCE_RELEASE_PERMISSION, "force-release claims")
    claim = get_claim(claim_id, lock=True)
    if claim.released_at is not None:
        return Released(claim, False)
    _end(claim)
    record("claim.force_released", actor=actor, obj=claim, details=_claim_details(claim))
    events.publish(events.ClaimReleased(actor, claim, forced=True))
    return Released(claim, True)


@transaction.atomic
def take_over(claim_id, *, actor, ttl_seconds=None):
    """Staff take a lease for themselves, live or not."""
    _require(actor, FORCE_RELEASE_PERMISSION, "take over claims")
    claim = get_claim(claim_id, lock=True)
    holder = _holder_fields(
        actor.name, f"{actor.source}:{actor.name}", f"{actor.source}:{actor.name}", ttl_seconds
    )
    _hand_over(claim, holder, timezone.now())
    record(
        "claim.taken_over",
        actor=actor,
        obj=claim,
        details=_claim_details(
            claim, previous_owner=claim.previous_owner, previous_agent_id=claim.previous_agent_id
        ),
    )
    events.publish(
        events.ClaimTakenOver(actor, claim, claim.previous_owner, claim.previous_agent_id)
    )
    return claim


# --- Approval requests ----------------------------------------------------------------------


def _approval_details(approval, **extra):
    return {"kind": approval.kind, "status": approval.status, **extra}


@transaction.atomic
def request_approval(*, kind, text, requested_by, actor, claim_id=None, payload=None):
    """Ask the approvers a question under the policy that applies to it.

    The policy's rules are copied onto the request; it expires after the policy's deadline
    (``APPROVAL_EXPIRY`` seconds under the default policy).
    """
    fields: dict[str, str] = {}
    if kind not in ApprovalRequest.Kind.values:
        fields["kind"] = f"must be one of {', '.join(ApprovalRequest.Kind.values)}"
    text = _text(fields, "text", text, max_length(ApprovalRequest, "text"))
    requested_by = _text(
        fields, "requested_by", requested_by, max_length(ApprovalRequest, "requested_by")
    )
    if payload is not None and not isinstance(payload, dict):
        fields["payload"] = "must be an object"
    linked_claim = None
    if claim_id is not None:
        linked_claim = (
            Claim.objects.filter(pk=claim_id).first() if str(claim_id).isdigit() else None
        )
        if linked_claim is None:
            fields["claim"] = f"no claim with id {claim_id}"
    if fields:
        raise InvalidInput(fields)
    policy = policies.policy_for(kind, policies.story_of(linked_claim, payload))
    rules = policies.Rules.of(policy)
    approval = ApprovalRequest.objects.create(
        kind=kind,
        text=text,
        payload=payload or {},
        requested_by=requested_by,
        requested_by_user=actor.authenticated_user,
        claim=linked_claim,
        policy=policy,
        rules=rules.as_dict(),
        **rules.timetable(timezone.now()),
    )
    record(
        "approval.requested",
        actor=actor,
        obj=approval,
        details=_approval_details(
            approval, text=text, requested_by=requested_by, policy=rules.policy
        ),
    )
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
def decide(approval_id, decision, *, actor, note=""):
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
    if len(note) > max_length(ApprovalRequest, "decision_note"):
        limit = max_length(ApprovalRequest, "decision_note")
        raise InvalidInput({"note": f"must be at most {limit} characters"})
    _require(actor, DECIDE_PERMISSION, "decide approval requests")
    approval = get_approval(approval_id, lock=True)
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
            f"Request {approval.short_id} expired at {approval.expires_at.isoformat()}.",
            status=approval.status,
        )
    refusal = policies.refusal(approval, actor.user)
    if refusal:
        raise NotPermitted(refusal)
    if decision in Vote.Choice.values:
        return _vote(approval, decision, actor=actor, note=note)
    return Decided(_settle(approval, decision, actor=actor, note=note, now=now), True)


def _vote(approval, choice, *, actor, note):
    """Count ``actor``'s vote; decide the request when it meets the quorum or vetoes."""
    vote, created = Vote.objects.get_or_create(
        approval=approval,
        voter=actor.user,
        defaults={"choice": choice, "source": actor.source, "note": note},
    )
    if not created and vote.choice == choice:
        return Decided(approval, False, voting.tally(approval))
    previous_choice = "" if created else vote.choice
    if not created:
        vote.choice, vote.source, vote.note = choice, actor.source, note
        vote.save(update_fields=["choice", "source", "note", "updated_at"])
    counted = voting.tally(approval, waiting=False)
    if counted.outcome:
        votes = [
            {"voter": v.voter.get_username(), "choice": v.choice, "source": v.source}
            for v in approval.votes.select_related("voter")
        ]
        settled = _settle(
            approval,
            Decision(counted.outcome),
            actor=actor,
            note=note,
            now=timezone.now(),
            votes=votes,
        )
        return Decided(settled, True, counted)
    counted = voting.tally(approval)
    approval.save(update_fields=["updated_at"])
    record(
        "approval.voted",
        actor=actor,
        obj=approval,
        details=_approval_details(
            approval, choice=choice, previous_choice=previous_choice, tally=counted.summary()
        ),
    )
    events.publish(events.VoteCounted(actor, approval, vote, counted))
    return Decided(approval, True, counted)


def _settle(approval, decision, *, actor, note, now, **details):
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
        details=_approval_details(approval, previous_status=previous, note=note, **details),
    )
    events.publish(events.ApprovalDecided(actor, approval, decision, previous))
    return approval


@transaction.atomic
def mark_executed(approval_id, *, actor):
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
def archive(approval_id, *, actor):
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


def expire_overdue(*, actor, now=None):
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


def _default_outcome(approval, *, actor, now):
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
            policy=rules.policy,
            default_decision=outcome != ApprovalPolicy.Outcome.EXPIRE,
            tally=voting.tally(approval, waiting=False).summary(),
        ),
    )
    if outcome == ApprovalPolicy.Outcome.EXPIRE:
        events.publish(events.ApprovalExpired(actor, approval, previous))
    else:
        events.publish(events.ApprovalDefaulted(actor, approval, outcome, previous))


# --- Approval policies ----------------------------------------------------------------------


def _policy_details(policy, **extra):
    return {
        "name": policy.name,
        "kind": policy.kind,
        "story_pattern": policy.story_pattern,
        "rules": policies.Rules.of(policy).as_dict(),
        **extra,
    }


@transaction.atomic
def save_policy(policy, *, approver_groups, actor, changed=()):
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
def delete_policy(policy, *, actor):
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
