"""What goes in and out of the API.

Input serializers check only the shape of a request (types, lengths); the rules (who may hold a
lease, which decision is allowed) stay in ``claims.services``, whose ``InvalidInput`` the
exception handler turns into the same 400 body.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth.models import User
from rest_framework import serializers

from audit.models import AuditEvent
from automation.models import Job, JobStep
from automation.representation import job_data
from backoffice.limits import max_length
from claims.models import ApprovalRequest, Claim, Vote
from claims.representation import approval_data, claim_data
from telegram_bridge.models import OutboundMessage


class OutputSerializer(serializers.ModelSerializer):
    """A serializer that only turns instances into answers, with fields built once per class.

    DRF builds a serializer's fields for every instance it is given, and for a model serializer
    that costs more than the rendering itself. ``represent()`` builds them once per class and
    reuses them, as DRF's ``ListSerializer`` reuses one child for every item of a list. That is
    only safe for fields that keep no per-request state: these read no ``context``.
    """

    _shared: ClassVar[OutputSerializer]

    @classmethod
    def represent(cls, instance):
        shared = cls.__dict__.get("_shared")
        if shared is None:
            shared = cls._shared = cls()
        return shared.to_representation(instance)


# --- Claims ---------------------------------------------------------------------------------


class StrictCharField(serializers.CharField):
    """Text that must arrive as a JSON string: a number is not quietly turned into one."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ClaimSerializer(OutputSerializer):
    """A lease. The owner is the user who claimed it; agent id and fingerprint are their labels.

    Nothing here proves holdership: the lease token is only in the answer that granted it.
    """

    holder = serializers.CharField(read_only=True, help_text='"user (agent label)".')
    live = serializers.BooleanField(read_only=True)
    seconds_left = serializers.IntegerField(read_only=True)
    frozen = serializers.BooleanField(read_only=True)
    waiting = serializers.IntegerField(read_only=True, help_text="Claimers waiting in line for it.")

    class Meta:
        model = Claim
        fields = [
            "id",
            "story",
            "todolist",
            "owner",
            "agent_id",
            "fingerprint",
            "holder",
            "fencing_token",
            "ttl_seconds",
            "version",
            "acquired_at",
            "expires_at",
            "released_at",
            "live",
            "seconds_left",
            "frozen",
            "frozen_reason",
            "waiting",
            "previous_owner",
            "previous_agent_id",
            "created_at",
            "updated_at",
        ]

    def to_representation(self, instance: Claim) -> dict[str, Any]:
        """``claims.representation.claim_data``, which every channel shows; the fields above
        describe it in the schema."""
        return claim_data(instance)


class GrantSerializer(ClaimSerializer):
    outcome = serializers.ChoiceField(
        choices=["acquired", "refreshed", "taken_over"],
        read_only=True,
        help_text="acquired: a new lease (201); refreshed: you held it already (200); "
        "taken_over: the previous lease had expired (201).",
    )
    lease_token = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="The secret that proves you hold this lease: send it to refresh, release or "
        "claim again. Shown in this answer only (null on a refresh, and in a replayed answer).",
    )

    class Meta(ClaimSerializer.Meta):
        fields = [*ClaimSerializer.Meta.fields, "outcome", "lease_token"]


MAX_API_WAIT = 60


class ClaimRequestSerializer(serializers.Serializer):
    story = StrictCharField(max_length=max_length(Claim, "story"))
    todolist = StrictCharField(max_length=max_length(Claim, "todolist"))
    agent_id = StrictCharField(
        max_length=max_length(Claim, "agent_id"), help_text="A label: which agent of yours claims."
    )
    fingerprint = StrictCharField(
        max_length=max_length(Claim, "fingerprint"),
        required=False,
        allow_blank=True,
        help_text="A label: session or host.",
    )
    ttl_seconds = serializers.IntegerField(
        required=False, min_value=1, help_text="Lease length; defaults to CLAIM_DEFAULT_TTL."
    )
    lease_token = StrictCharField(
        max_length=200,
        required=False,
        help_text="To refresh a lease you hold (or send the Lease-Token header).",
    )
    wait = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=MAX_API_WAIT,
        default=0,
        help_text="Seconds to wait in line while the work item is busy (at most 60).",
    )


class LeaseProofSerializer(serializers.Serializer):
    """Proof of holdership: the lease token (here or in the Lease-Token header)."""

    lease_token = StrictCharField(
        max_length=200,
        required=False,
        help_text="The lease token from the grant answer; or send the Lease-Token header.",
    )
    fencing_token = serializers.IntegerField(
        required=False, min_value=0, help_text="Refused with 409 stale_fence if not current."
    )


class RefreshSerializer(LeaseProofSerializer):
    ttl_seconds = serializers.IntegerField(
        required=False, min_value=1, help_text="New lease length; defaults to the current TTL."
    )


class FenceCheckSerializer(serializers.Serializer):
    story = StrictCharField(max_length=max_length(Claim, "story"))
    todolist = StrictCharField(max_length=max_length(Claim, "todolist"))
    fencing_token = serializers.IntegerField(min_value=0)


# --- Approval requests ----------------------------------------------------------------------


class VoteSerializer(serializers.Serializer):
    """One approver's vote on a request."""

    voter = serializers.CharField(help_text="The voter's username.")
    choice = serializers.ChoiceField(choices=Vote.Choice.choices)
    note = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField(help_text="When the vote was last changed.")

    def get_fields(self):
        # "source" would shadow Field.source as a class attribute, so it is added here.
        fields = super().get_fields()
        fields["source"] = serializers.ChoiceField(
            choices=ApprovalRequest.DecisionSource.choices, help_text="The channel it came from."
        )
        return fields


class TallySerializer(serializers.Serializer):
    """The votes counted against the request's policy."""

    approvals = serializers.IntegerField()
    denials = serializers.IntegerField()
    quorum = serializers.IntegerField(help_text="Approvals needed.")
    deny_needs_quorum = serializers.BooleanField(
        help_text="false: any one deny denies the request (a veto)."
    )
    waiting_for = serializers.ListField(
        child=serializers.CharField(),
        help_text="Usernames of eligible approvers who have not voted (the first few).",
    )
    summary = serializers.CharField(help_text='E.g. "1 of 2 approvals, waiting for bob".')


class ApprovalSerializer(OutputSerializer):
    requested_by_user: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    decided_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    policy = serializers.CharField(
        read_only=True,
        help_text="The policy whose rules were copied onto the request when it was made.",
    )
    votes = VoteSerializer(many=True, read_only=True)
    tally = TallySerializer(read_only=True)

    class Meta:
        model = ApprovalRequest
        fields = [
            "id",
            "kind",
            "text",
            "payload",
            "requested_by",
            "agent_id",
            "requested_by_user",
            "claim",
            "status",
            "decided_by",
            "decided_at",
            "decision_source",
            "decision_note",
            "expires_at",
            "executed_at",
            "archived_at",
            "created_at",
            "updated_at",
            "policy",
            "votes",
            "tally",
        ]

    def to_representation(self, instance: ApprovalRequest) -> dict[str, Any]:
        """``claims.representation.approval_data``, which every channel shows; the fields above
        describe it in the schema."""
        return approval_data(instance)


class DecisionResultSerializer(ApprovalSerializer):
    changed = serializers.BooleanField(
        read_only=True,
        help_text="false when your vote or decision was already so: nothing was done. A vote "
        "counted without deciding the request is true, with the request still pending.",
    )

    class Meta(ApprovalSerializer.Meta):
        fields = [*ApprovalSerializer.Meta.fields, "changed"]


class ApprovalRequestSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ApprovalRequest.Kind.choices)
    text = StrictCharField(max_length=max_length(ApprovalRequest, "text"))
    payload = serializers.DictField(required=False, help_text="Machine-readable detail.")
    agent_id = StrictCharField(
        max_length=max_length(ApprovalRequest, "agent_id"),
        required=False,
        help_text="A label: which agent of yours asks.",
    )
    claim = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="The id of a related claim."
    )
    callback_url = StrictCharField(
        required=False,
        allow_blank=True,
        help_text="https URL on a host in CALLBACK_ALLOWED_HOSTS: the request's new state is "
        "POSTed there, signed with this token's secret, once it is decided or expires "
        "(docs/callbacks.md).",
    )


class CallbackSecretSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="The HMAC-SHA256 key of this token's callbacks.")
    signature_header = serializers.CharField()
    timestamp_header = serializers.CharField()
    idempotency_header = serializers.CharField()


class DecisionSerializer(serializers.Serializer):
    note = StrictCharField(
        max_length=max_length(ApprovalRequest, "decision_note"),
        required=False,
        allow_blank=True,
        default="",
    )


# --- Jobs -----------------------------------------------------------------------------------


class JobStepSerializer(serializers.Serializer):
    """One step: as it would run (argv, env names, timeout) and what became of it."""

    id = serializers.CharField(help_text="The step's id in the manifest.")
    position = serializers.IntegerField()
    status = serializers.ChoiceField(choices=JobStep.Status.choices)
    argv = serializers.ListField(child=serializers.CharField())
    env_names = serializers.ListField(
        child=serializers.CharField(), help_text="The names the step's env sets (never values)."
    )
    timeout = serializers.IntegerField(help_text="Seconds; the process group is killed after.")
    retries = serializers.IntegerField()
    allow_fail = serializers.BooleanField()
    attempts = serializers.IntegerField()
    returncode = serializers.IntegerField(allow_null=True)
    timed_out = serializers.BooleanField()
    dry_run = serializers.BooleanField(help_text="Recorded only, with output DRY_RUN.")
    duration_ms = serializers.IntegerField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    idempotency_key = serializers.CharField(help_text="SHA-256 of the job, step and inputs.")
    stdout = serializers.CharField(help_text="Up to AUTOMATION_OUTPUT_LIMIT bytes, then marked.")
    stderr = serializers.CharField()


class WorkItemSerializer(serializers.Serializer):
    story = serializers.CharField()
    todolist = serializers.CharField()


class JobSerializer(OutputSerializer):
    """A job: the approved manifest and its hash, dry run or live, and how far it got."""

    short_id = serializers.CharField(read_only=True)
    mode = serializers.ChoiceField(choices=["dry_run", "live"], read_only=True)
    manifest_short = serializers.CharField(read_only=True, help_text="The hash approvers see.")
    approval_status = serializers.CharField(read_only=True)
    submitted_by = serializers.CharField(read_only=True)
    work_item = WorkItemSerializer(read_only=True, allow_null=True)
    steps = JobStepSerializer(many=True, read_only=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "short_id",
            "name",
            "status",
            "mode",
            "dry_run",
            "live",
            "manifest_sha256",
            "manifest_short",
            "approval",
            "approval_status",
            "submitted_by",
            "agent_id",
            "work_item",
            "fencing_token",
            "concurrency",
            "reason",
            "runs",
            "cancel_requested",
            "worker",
            "approved_at",
            "started_at",
            "finished_at",
            "created_at",
            "updated_at",
            "manifest",
            "steps",
        ]

    def to_representation(self, instance: Job) -> dict[str, Any]:
        """``automation.representation.job_data``, which the jobs command prints too."""
        return job_data(instance)


class JobResultSerializer(JobSerializer):
    changed = serializers.BooleanField(
        read_only=True, help_text="false when the job was already cancelled (or asked to be)."
    )

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "changed"]


class JobSubmitSerializer(serializers.Serializer):
    manifest = serializers.JSONField(
        help_text="The manifest (docs/automation.md): name, optional work_item and concurrency, "
        "steps with id, argv, timeout, retries, allow_fail, env, cwd."
    )
    live = serializers.BooleanField(
        default=False,
        help_text="Run for real once approved; a dry run unless AUTOMATION_ALLOW_EXECUTION is on.",
    )
    agent_id = StrictCharField(
        max_length=max_length(ApprovalRequest, "agent_id"),
        required=False,
        default="",
        help_text="A label: which agent of yours submits.",
    )
    callback_url = StrictCharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="https URL on a host in CALLBACK_ALLOWED_HOSTS: the approval request's "
        "decision and then the job's end are POSTed there, signed with this token's secret "
        "(docs/callbacks.md).",
    )


# --- Audit trail and outbox -----------------------------------------------------------------


class AuditEventSerializer(serializers.ModelSerializer):
    actor: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "timestamp",
            "actor",
            "actor_label",
            "action",
            "source",
            "object_type",
            "object_id",
            "trace_id",
            "details",
        ]


class OutboundMessageSerializer(OutputSerializer):
    class Meta:
        model = OutboundMessage
        fields = [
            "id",
            "method",
            "chat_id",
            "payload",
            "dedupe_key",
            "status",
            "attempts",
            "requeues",
            "next_attempt_at",
            "last_error",
            "last_status_code",
            "telegram_message_id",
            "sent_at",
            "failed_at",
            "created_at",
            "updated_at",
        ]


class RequeueResultSerializer(OutboundMessageSerializer):
    requeued = serializers.BooleanField(read_only=True)

    class Meta(OutboundMessageSerializer.Meta):
        fields = [*OutboundMessageSerializer.Meta.fields, "requeued"]


# --- Errors ---------------------------------------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    """The body of every error answer (``api.exceptions``)."""

    error = serializers.CharField(help_text="A stable machine-readable code, e.g. not_holder.")
    detail = serializers.CharField(help_text="What went wrong, in words.")

    def get_fields(self):
        # "fields" would shadow Serializer.fields as a class attribute, so it is added here.
        fields = super().get_fields()
        fields["fields"] = serializers.DictField(
            child=serializers.ListField(child=serializers.CharField()),
            help_text="Each invalid field and what is wrong with it; empty otherwise.",
        )
        return fields


class ConflictSerializer(ErrorSerializer):
    """409: the lease holder and its end, or the approval request's current status."""

    holder = serializers.DictField(child=serializers.CharField(), required=False)
    expires_at = serializers.CharField(required=False)
    waiting = serializers.IntegerField(required=False, help_text="Claimers in line (conflict).")
    fencing_token = serializers.IntegerField(
        required=False, help_text="The current fencing token (stale_fence)."
    )
    reason = serializers.CharField(required=False, help_text="Why it is frozen (frozen).")
    status = serializers.CharField(required=False)
    steps = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        help_text="The steps off the allowlist (command_not_allowed, 403).",
    )
