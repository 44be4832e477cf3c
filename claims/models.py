import hmac
import uuid
from datetime import datetime
from fnmatch import fnmatchcase

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .lease_tokens import hash_lease_token


def labelled(name: str, label: str) -> str:
    """How a checked identity and its free-text label are shown everywhere: "user (label)"."""
    return f"{name} ({label})" if label and label != name else name


def _live(now: datetime | None = None) -> Q:
    """The rule for a live lease, as a query: not released and not yet expired."""
    return Q(released_at__isnull=True, expires_at__gt=now or timezone.now())


class ClaimQuerySet(models.QuerySet["Claim"]):
    def live(self, now: datetime | None = None) -> "ClaimQuerySet":
        """Leases held right now."""
        return self.filter(_live(now))

    def ended(self, now: datetime | None = None) -> "ClaimQuerySet":
        """Leases released or expired: free to be claimed."""
        return self.exclude(_live(now))


class Claim(models.Model):
    """A lease on one work item, the (story, todolist) pair.

    There is one row per work item for its whole life; the holder changes as leases are released,
    expire and are taken over, and ``version`` grows on every change so clients can detect races.
    ``fencing_token`` grows on every grant only, and since the row is never replaced it is never
    reused: an outside resource compares it to refuse a writer that lost its lease.

    The owner is a user the system checked (the API token's user, the CLI's ``--user``); the agent
    id and fingerprint are labels the holder chose. Only the lease token, whose hash is kept here,
    proves holdership.
    """

    story = models.CharField(max_length=200)
    todolist = models.CharField(max_length=200)
    owner = models.CharField(max_length=150, help_text="The username of the lease's holder.")
    owner_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name="owner (user)",
    )
    agent_id = models.CharField(max_length=150, help_text="A label: the agent acting for them.")
    fingerprint = models.CharField(
        max_length=200, blank=True, help_text="A label: the holder's session or host."
    )
    lease_token_hash = models.CharField(max_length=64, blank=True, editable=False)
    fencing_token = models.PositiveBigIntegerField(
        default=0, help_text="Grows on every grant of this work item; never reused."
    )
    ttl_seconds = models.PositiveIntegerField("TTL (seconds)")
    version = models.PositiveIntegerField(default=1)
    takeovers = models.PositiveIntegerField(
        default=0, help_text="How often an expired lease on this work item was taken over."
    )
    frozen_at = models.DateTimeField(null=True, blank=True)
    frozen_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    frozen_reason = models.TextField(max_length=2000, blank=True)
    acquired_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    released_at = models.DateTimeField(null=True, blank=True)
    previous_owner = models.CharField(max_length=150, blank=True)
    previous_agent_id = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ClaimQuerySet.as_manager()

    class Meta:
        ordering = ["story", "todolist"]
        constraints = [
            models.UniqueConstraint(fields=["story", "todolist"], name="one_claim_per_work_item"),
        ]
        permissions = [("force_release_claim", "Can force-release or take over a claim")]

    def __str__(self):
        return f"{self.story}/{self.todolist}"

    @property
    def work_item(self):
        return f"{self.story}/{self.todolist}"

    def is_live(self, now: datetime | None = None) -> bool:
        """The rule of ``ClaimQuerySet.live()``, for a claim in hand."""
        return self.released_at is None and self.expires_at > (now or timezone.now())

    def seconds_left(self, now=None):
        """Whole seconds until the lease ends; 0 once it is released or expired."""
        if not self.is_live(now):
            return 0
        return int((self.expires_at - (now or timezone.now())).total_seconds())

    @property
    def holder(self) -> str:
        return labelled(self.owner, self.agent_id)

    @property
    def previous_holder(self) -> str:
        return labelled(self.previous_owner, self.previous_agent_id)

    @property
    def frozen(self) -> bool:
        return self.frozen_at is not None

    def proves(self, lease_token: str) -> bool:
        """Whether ``lease_token`` is the secret handed out with the current lease."""
        if not self.lease_token_hash or not lease_token:
            return False
        return hmac.compare_digest(hash_lease_token(lease_token), self.lease_token_hash)


class ClaimWaiter(models.Model):
    """A claimer waiting in line for a busy work item; the lowest id is served first.

    A waiter renews ``seen_until`` while it waits, so one that died is skipped and dropped
    instead of blocking the line.
    """

    claim = models.ForeignKey(Claim, on_delete=models.CASCADE, related_name="waiters")
    owner = models.CharField(max_length=150)
    agent_id = models.CharField(max_length=150)
    joined_at = models.DateTimeField()
    seen_until = models.DateTimeField()

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return labelled(self.owner, self.agent_id)

    def waited(self, now: datetime | None = None) -> float:
        return ((now or timezone.now()) - self.joined_at).total_seconds()


class Kind(models.TextChoices):
    """What an approval request asks about."""

    CLAIM = "claim", "Claim"
    COMMAND = "command", "Command"
    MANIFEST = "manifest", "Release manifest"


class ApprovalPolicy(models.Model):
    """The rules a request is decided by: who votes, how many, and what happens if nobody does.

    A policy applies to requests of its kind (blank: any kind) whose story matches its pattern
    (blank: any story); of the policies that apply, the most specific wins (see
    ``claims.policies.policy_for``). The rules are copied onto each request when it is created,
    so editing a policy never changes the requests already open.
    """

    class Outcome(models.TextChoices):
        EXPIRE = "expire", "Expire"
        DENY = "deny", "Deny"
        APPROVE = "approve", "Approve if nobody objected (low-risk kinds only)"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(
        max_length=16, choices=Kind.choices, blank=True, help_text="Blank: requests of any kind."
    )
    story_pattern = models.CharField(
        max_length=200,
        blank=True,
        help_text="Shell-style pattern on the story, e.g. release-* (blank: any story).",
    )
    quorum = models.PositiveSmallIntegerField(
        default=1, help_text="Approvals needed, each from a different eligible approver."
    )
    deny_needs_quorum = models.BooleanField(
        default=False,
        help_text="A denial also needs the quorum; otherwise any one deny ends the request.",
    )
    approver_groups = models.ManyToManyField(
        Group,
        blank=True,
        related_name="+",
        help_text="Who may vote (blank: everyone who may decide approval requests).",
    )
    requester_may_approve = models.BooleanField(
        default=False, help_text="Off: separation of duties, nobody votes on their own request."
    )
    deadline_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="How long a request may wait (blank: APPROVAL_EXPIRY)."
    )
    default_outcome = models.CharField(
        max_length=16, choices=Outcome.choices, default=Outcome.EXPIRE
    )
    low_risk = models.BooleanField(
        default=False,
        help_text="This kind is low-risk: needed for approve-if-no-objection at the deadline.",
    )
    reminder_fractions = models.CharField(
        max_length=100,
        blank=True,
        help_text="Remind the approver chat at these fractions of the deadline, e.g. 0.5, 0.9.",
    )
    escalate_after_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Escalate a request still undecided after this long."
    )
    escalation_group = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    escalation_chat_id = models.BigIntegerField(
        null=True, blank=True, help_text="Telegram chat told about an escalation."
    )
    widen_on_escalation = models.BooleanField(
        default=False, help_text="Once escalated, the escalation group may vote too."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "approval policies"
        ordering = ["kind", "story_pattern", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "story_pattern"], name="one_policy_per_kind_and_story_pattern"
            ),
            models.CheckConstraint(condition=models.Q(quorum__gte=1), name="quorum_at_least_one"),
        ]

    def __str__(self):
        return self.name

    def matches(self, kind: str, story: str) -> bool:
        if self.kind and self.kind != kind:
            return False
        return not self.story_pattern or fnmatchcase(story, self.story_pattern)

    def reminders(self) -> list[float]:
        """The reminder fractions as numbers; raises ``ValueError`` for anything else."""
        parts = [part.strip() for part in self.reminder_fractions.split(",") if part.strip()]
        return sorted({float(part) for part in parts})

    def clean(self):
        errors = {}
        try:
            if any(not 0 < fraction < 1 for fraction in self.reminders()):
                errors["reminder_fractions"] = "Each fraction must be between 0 and 1."
        except ValueError:
            errors["reminder_fractions"] = "Give numbers separated by commas, e.g. 0.5, 0.9."
        if self.default_outcome == self.Outcome.APPROVE and not (self.kind and self.low_risk):
            errors["default_outcome"] = (
                "Approve-if-no-objection is only for a kind this policy marks low-risk."
            )
        if self.widen_on_escalation and self.escalation_group_id is None:
            errors["escalation_group"] = "Widening needs an escalation group."
        escalates_somewhere = self.escalation_group_id or self.escalation_chat_id
        if escalates_somewhere and not self.escalate_after_minutes:
            errors["escalate_after_minutes"] = "Say after how long to escalate."
        if self.quorum is not None and self.quorum < 1:
            errors["quorum"] = "At least one approval is needed."
        if errors:
            raise ValidationError(errors)


class Decision(models.TextChoices):
    """What an approver may decide about a request; the label is what the request then is."""

    APPROVE = "approve", "approved"
    DENY = "deny", "denied"
    POSTPONE = "postpone", "postponed"
    REOPEN = "reopen", "reopened"


class ApprovalRequest(models.Model):
    """A question to a human: may this claim, command or release manifest go ahead?"""

    Kind = Kind

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        DENIED = "denied", "Denied"
        POSTPONED = "postponed", "Postponed"
        EXPIRED = "expired", "Expired"
        EXECUTED = "executed", "Executed"
        ARCHIVED = "archived", "Archived"

    # A request in one of these may still be approved or denied; any other status is final.
    AWAITING_DECISION = frozenset({Status.PENDING, Status.POSTPONED})

    class DecisionSource(models.TextChoices):
        ADMIN = "admin", "Admin"
        API = "api", "API"
        CLI = "cli", "CLI"
        TELEGRAM = "telegram", "Telegram"
        DEFAULT = "default", "Default outcome of the policy"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    text = models.TextField(
        max_length=4000, help_text="What is asked, in words an approver understands."
    )
    payload = models.JSONField(
        default=dict, blank=True, help_text="Machine-readable detail: the command, the manifest."
    )
    requested_by = models.CharField(max_length=150, help_text="The username of who asked.")
    agent_id = models.CharField(
        max_length=150, blank=True, help_text="A label: the agent that asked for the user."
    )
    requested_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    claim = models.ForeignKey(
        Claim, null=True, blank=True, on_delete=models.SET_NULL, related_name="approval_requests"
    )
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_source = models.CharField(max_length=16, choices=DecisionSource.choices, blank=True)
    decision_note = models.TextField(max_length=2000, blank=True)
    expires_at = models.DateTimeField(db_index=True)
    executed_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    policy = models.ForeignKey(
        ApprovalPolicy, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rules = models.JSONField(
        default=dict, blank=True, help_text="The policy's rules, copied when the request was made."
    )
    next_reminder_at = models.DateTimeField(null=True, blank=True, db_index=True)
    reminders_sent = models.PositiveSmallIntegerField(default=0)
    escalate_at = models.DateTimeField(null=True, blank=True, db_index=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # Time to decision (decision_times.py) reads every column it needs from this index:
            # an index-only scan of the recent decisions, not a scan of every request's text.
            models.Index(
                fields=["decided_at", "kind", "created_at", "status", "decision_source"],
                name="approval_decided_idx",
            )
        ]
        permissions = [
            ("decide_approvalrequest", "Can approve, deny or postpone approval requests"),
            ("archive_approvalrequest", "Can archive approval requests"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.short_id}: {self.text[:60]}"

    @property
    def short_id(self):
        return self.id.hex[:8]

    @property
    def requester(self) -> str:
        return labelled(self.requested_by, self.agent_id)


class Vote(models.Model):
    """One approver's approve or deny on one request; changeable until the request is decided."""

    class Choice(models.TextChoices):
        APPROVE = "approve", "Approve"
        DENY = "deny", "Deny"

    approval = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="votes")
    voter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    choice = models.CharField(max_length=8, choices=Choice.choices)
    source = models.CharField(max_length=16, choices=ApprovalRequest.DecisionSource.choices)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["approval", "voter"], name="one_vote_per_approver"),
        ]

    def __str__(self):
        return f"{self.voter} votes {self.choice} on {self.approval.short_id}"
