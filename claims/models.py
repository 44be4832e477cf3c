import hmac
import uuid
from datetime import datetime

from django.conf import settings
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


class Decision(models.TextChoices):
    """What an approver may decide about a request; the label is what the request then is."""

    APPROVE = "approve", "approved"
    DENY = "deny", "denied"
    POSTPONE = "postpone", "postponed"
    REOPEN = "reopen", "reopened"


class ApprovalRequest(models.Model):
    """A question to a human: may this claim, command or release manifest go ahead?"""

    class Kind(models.TextChoices):
        CLAIM = "claim", "Claim"
        COMMAND = "command", "Command"
        MANIFEST = "manifest", "Release manifest"

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
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
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
