"""Which policy a request falls under, the rules it copies from it, and who may vote on it.

A request keeps a copy of its policy's rules (``ApprovalRequest.rules``, written once when it is
made), so an administrator editing a policy changes what new requests need and never what an open
one needs. Everything here reads that copy, not the policy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AbstractUser, AnonymousUser, Group
from django.db.models import Q, QuerySet

from .models import ApprovalPolicy, ApprovalRequest, Claim

Outcome = ApprovalPolicy.Outcome
DECIDE_PERMISSION = "claims.decide_approvalrequest"


@dataclass(frozen=True)
class Rules:
    """A policy's rules as copied onto a request. The defaults are the built-in default policy."""

    policy: str = ""
    quorum: int = 1
    deny_needs_quorum: bool = False
    approver_groups: tuple[int, ...] = ()
    requester_may_approve: bool = True
    deadline_seconds: int = 0
    default_outcome: str = Outcome.EXPIRE
    low_risk: bool = False
    reminders: tuple[float, ...] = ()
    escalate_after_seconds: int | None = None
    escalation_group: int | None = None
    escalation_chat_id: int | None = None
    widen_on_escalation: bool = False

    @classmethod
    def of(cls, policy: ApprovalPolicy | None) -> Rules:
        """The rules of ``policy``, or of the built-in default when no policy applies."""
        deadline = settings.APPROVAL_EXPIRY
        if policy is None:
            return cls(deadline_seconds=deadline)
        if policy.deadline_minutes:
            deadline = policy.deadline_minutes * 60
        return cls(
            policy=policy.name,
            quorum=policy.quorum,
            deny_needs_quorum=policy.deny_needs_quorum,
            approver_groups=tuple(sorted(group.pk for group in policy.approver_groups.all())),
            requester_may_approve=policy.requester_may_approve,
            deadline_seconds=deadline,
            default_outcome=policy.default_outcome,
            low_risk=policy.low_risk,
            reminders=tuple(policy.reminders()),
            escalate_after_seconds=(
                policy.escalate_after_minutes * 60 if policy.escalate_after_minutes else None
            ),
            escalation_group=policy.escalation_group_id,
            escalation_chat_id=policy.escalation_chat_id,
            widen_on_escalation=policy.widen_on_escalation,
        )

    @classmethod
    def from_request(cls, approval: ApprovalRequest) -> Rules:
        """The rules copied onto ``approval``; a request made before policies has the default."""
        known = {name: value for name, value in approval.rules.items() if name in _FIELDS}
        for name in ("approver_groups", "reminders"):
            if name in known:
                known[name] = tuple(known[name])
        return cls(**known)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def timetable(self, asked_at: datetime) -> dict[str, datetime | None]:
        """The deadline, first reminder and escalation of a request asked at ``asked_at``."""
        expires_at = asked_at + timedelta(seconds=self.deadline_seconds)
        reminders = self.reminder_times(expires_at)
        escalate_at = None
        if self.escalate_after_seconds:
            escalate_at = asked_at + timedelta(seconds=self.escalate_after_seconds)
        return {
            "expires_at": expires_at,
            "next_reminder_at": reminders[0] if reminders else None,
            "escalate_at": escalate_at if escalate_at and escalate_at < expires_at else None,
        }

    def reminder_times(self, expires_at: datetime) -> list[datetime]:
        """When each reminder is due, for a request that expires at ``expires_at``."""
        asked_at = expires_at - timedelta(seconds=self.deadline_seconds)
        return [asked_at + timedelta(seconds=self.deadline_seconds * f) for f in self.reminders]


_FIELDS = set(Rules.__dataclass_fields__)


def story_of(claim: Claim | None, payload: dict[str, Any] | None) -> str:
    """The story a request is about: its claim's, else a ``story`` in its payload, else none."""
    if claim is not None:
        return claim.story
    story = payload.get("story") if isinstance(payload, dict) else None
    return story if isinstance(story, str) else ""


def specificity(policy: ApprovalPolicy) -> tuple[int, int, int]:
    """How narrowly a policy aims: more criteria first, a story pattern before a kind, then the
    pattern with more literal characters (fewer wildcards)."""
    literal = len(policy.story_pattern) - sum(policy.story_pattern.count(c) for c in "*?[]")
    return (bool(policy.kind) + bool(policy.story_pattern), bool(policy.story_pattern), literal)


def policy_for(kind: str, story: str) -> ApprovalPolicy | None:
    """The most specific policy that applies to a request of ``kind`` about ``story``."""
    candidates = [
        policy
        for policy in ApprovalPolicy.objects.filter(Q(kind=kind) | Q(kind="")).prefetch_related(
            "approver_groups"
        )
        if policy.matches(kind, story)
    ]
    if not candidates:
        return None
    # The unique (kind, story_pattern) pair leaves a tie only between different patterns of the
    # same specificity; the oldest policy wins it.
    return max(candidates, key=lambda policy: (specificity(policy), -policy.pk))


def is_requester(approval: ApprovalRequest, user: AbstractBaseUser) -> bool:
    return approval.requested_by_user_id is not None and approval.requested_by_user_id == user.pk


def requester_may_vote(rules: Rules) -> bool:
    return rules.requester_may_approve and not settings.APPROVAL_FORBID_SELF_APPROVAL


def voting_groups(approval: ApprovalRequest, rules: Rules) -> tuple[int, ...]:
    """The groups whose members may vote now; empty: everyone who may decide requests."""
    groups = rules.approver_groups
    widened = rules.widen_on_escalation and approval.escalated_at is not None
    if groups and widened and rules.escalation_group is not None:
        groups = (*groups, rules.escalation_group)
    return groups


def refusal(approval: ApprovalRequest, user: AbstractUser | AnonymousUser | None) -> str:
    """Why ``user`` may not vote on ``approval``, or an empty string when they may."""
    rules = Rules.from_request(approval)
    if user is None or not user.is_authenticated:
        return "Only a person may vote on a request."
    if not requester_may_vote(rules) and is_requester(approval, user):
        return "You may not decide a request you made yourself."
    groups = voting_groups(approval, rules)
    if groups and not user.groups.filter(pk__in=groups).exists():
        return f"Only members of {group_names(groups)} may decide request {approval.short_id}."
    return ""


def eligible_voters(approval: ApprovalRequest) -> QuerySet:
    """The active users who may vote on ``approval`` now."""
    rules = Rules.from_request(approval)
    users = get_user_model()._default_manager.filter(is_active=True)
    groups = voting_groups(approval, rules)
    if groups:
        users = users.filter(groups__in=groups).distinct()
    else:
        users = users.filter(pk__in=get_user_model()._default_manager.with_perm(DECIDE_PERMISSION))
    if not requester_may_vote(rules) and approval.requested_by_user_id is not None:
        users = users.exclude(pk=approval.requested_by_user_id)
    return users


def group_names(group_ids: tuple[int, ...]) -> str:
    names = sorted(Group.objects.filter(pk__in=group_ids).values_list("name", flat=True))
    return ", ".join(names) or "no group"
