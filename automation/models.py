import uuid

from django.conf import settings
from django.db import models

from claims.models import ApprovalRequest

from .manifest import short


class Job(models.Model):
    """One run of an approved manifest: what was approved (its bytes and hash), where it stands.

    A job is created with its approval request and runs at most once per approval; a resume after
    a lost worker, or a re-run from the failed step, is the same job going on, never a second one.
    """

    class Status(models.TextChoices):
        AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        REFUSED = "refused", "Refused"

    ENDED = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.REFUSED})

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    manifest = models.JSONField(help_text="The manifest exactly as approved.")
    manifest_sha256 = models.CharField("manifest SHA-256", max_length=64)
    approval = models.OneToOneField(ApprovalRequest, on_delete=models.PROTECT, related_name="job")
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    agent_id = models.CharField(max_length=150, blank=True)
    live = models.BooleanField(default=False, help_text="Submitted to run for real.")
    dry_run = models.BooleanField(
        default=True, help_text="Steps are only recorded, never run (see AUTOMATION_*)."
    )
    story = models.CharField(max_length=200, blank=True)
    todolist = models.CharField(max_length=200, blank=True)
    concurrency = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.AWAITING_APPROVAL, db_index=True
    )
    reason = models.TextField(blank=True, help_text="Why it was refused, failed or cancelled.")
    runs = models.PositiveIntegerField(
        default=0, help_text="How often a worker took it up (resumes and re-runs count)."
    )
    cancel_requested = models.BooleanField(default=False)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid running it.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    fencing_token = models.PositiveBigIntegerField(null=True, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("cancel_job", "Can cancel any job"),
            ("rerun_job", "Can re-run a job from its failed step"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.short_id})"

    @property
    def short_id(self) -> str:
        return self.pk.hex[:8]

    @property
    def short_hash(self) -> str:
        return short(self.manifest_sha256)

    @property
    def work_item(self) -> str:
        return f"{self.story}/{self.todolist}" if self.story else ""

    @property
    def ended(self) -> bool:
        return self.status in self.ENDED


class JobStep(models.Model):
    """One step of a job and what became of it: return code, duration, output (capped)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        INTERRUPTED = "interrupted", "Interrupted (worker lost)"
        CANCELLED = "cancelled", "Cancelled"

    # A step in one of these states is not run again when the job resumes.
    DONE = frozenset({Status.SUCCEEDED, Status.FAILED})

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField()
    step_id = models.CharField(max_length=64)
    idempotency_key = models.CharField(max_length=64, unique=True)
    argv = models.JSONField()
    env_names = models.JSONField(default=list)
    timeout = models.PositiveIntegerField()
    retries = models.PositiveSmallIntegerField(default=0)
    allow_fail = models.BooleanField(default=False)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    pid = models.PositiveIntegerField(null=True, blank=True, help_text="Of the running process.")
    returncode = models.IntegerField(null=True, blank=True)
    timed_out = models.BooleanField(default=False)
    dry_run = models.BooleanField(default=False)
    stdout = models.TextField(blank=True)
    stderr = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["job", "position"]
        constraints = [
            models.UniqueConstraint(fields=["job", "position"], name="one_step_per_position"),
        ]

    def __str__(self) -> str:
        return f"{self.job_id}:{self.step_id}"

    @property
    def attempts_left(self) -> bool:
        return self.attempts <= self.retries
