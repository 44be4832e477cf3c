"""What goes in and out of the API.

Input serializers check only the shape of a request (types, lengths); the rules (who may hold a
lease, which decision is allowed) stay in ``claims.services``, whose ``InvalidInput`` the
exception handler turns into the same 400 body.
"""

from __future__ import annotations

from typing import ClassVar

from django.contrib.auth.models import User
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from audit.models import AuditEvent
from claims.models import ApprovalRequest, Claim, Vote, max_length
from claims.policies import Rules
from claims.voting import tally
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


class ClaimSerializer(OutputSerializer):
    """A lease; the holder's fingerprint is left out, since it proves holdership."""

    live = serializers.SerializerMethodField()
    seconds_left = serializers.SerializerMethodField()

    class Meta:
        model = Claim
        fields = [
            "id",
            "story",
            "todolist",
            "owner",
            "agent_id",
            "ttl_seconds",
            "version",
            "acquired_at",
            "expires_at",
            "released_at",
            "live",
            "seconds_left",
            "previous_owner",
            "previous_agent_id",
            "created_at",
            "updated_at",
        ]

    def get_live(self, claim) -> bool:
        return claim.is_live()

    def get_seconds_left(self, claim) -> int:
        return claim.seconds_left()


class GrantSerializer(ClaimSerializer):
    outcome = serializers.ChoiceField(
        choices=["acquired", "refreshed", "taken_over"],
        read_only=True,
        help_text="acquired: a new lease (201); refreshed: you held it already (200); "
        "taken_over: the previous lease had expired (201).",
    )

    class Meta(ClaimSerializer.Meta):
        fields = [*ClaimSerializer.Meta.fields, "outcome"]


class ClaimRequestSerializer(serializers.Serializer):
    story = serializers.CharField(max_length=max_length(Claim, "story"))
    todolist = serializers.CharField(max_length=max_length(Claim, "todolist"))
    owner = serializers.CharField(
        max_length=max_length(Claim, "owner"),
        required=False,
        help_text="Who holds the lease; defaults to your username.",
    )
    agent_id = serializers.CharField(max_length=max_length(Claim, "agent_id"))
    fingerprint = serializers.CharField(max_length=max_length(Claim, "fingerprint"))
    ttl_seconds = serializers.IntegerField(
        required=False, min_value=1, help_text="Lease length; defaults to CLAIM_DEFAULT_TTL."
    )


class HolderSerializer(serializers.Serializer):
    """Proof of holdership: the agent id or the fingerprint the lease was claimed with."""

    agent_id = serializers.CharField(
        max_length=max_length(Claim, "agent_id"), required=False, allow_blank=True
    )
    fingerprint = serializers.CharField(
        max_length=max_length(Claim, "fingerprint"), required=False, allow_blank=True
    )


class RefreshSerializer(HolderSerializer):
    ttl_seconds = serializers.IntegerField(
        required=False, min_value=1, help_text="New lease length; defaults to CLAIM_DEFAULT_TTL."
    )


# --- Approval requests ----------------------------------------------------------------------


class VoteSerializer(OutputSerializer):
    voter: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )

    class Meta:
        model = Vote
        fields = ["voter", "choice", "source", "note", "created_at", "updated_at"]


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
    policy = serializers.SerializerMethodField(
        help_text="The policy whose rules were copied onto the request when it was made."
    )
    votes = VoteSerializer(many=True, read_only=True)
    tally = serializers.SerializerMethodField()

    class Meta:
        model = ApprovalRequest
        fields = [
            "id",
            "kind",
            "text",
            "payload",
            "requested_by",
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

    def get_policy(self, approval) -> str:
        return Rules.from_request(approval).policy

    @extend_schema_field(TallySerializer)
    def get_tally(self, approval):
        return tally(approval).as_dict()


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
    text = serializers.CharField(max_length=max_length(ApprovalRequest, "text"))
    payload = serializers.DictField(required=False, help_text="Machine-readable detail.")
    requested_by = serializers.CharField(
        max_length=max_length(ApprovalRequest, "requested_by"),
        required=False,
        help_text="Who asks; defaults to your username.",
    )
    claim = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="The id of a related claim."
    )


class DecisionSerializer(serializers.Serializer):
    note = serializers.CharField(
        max_length=max_length(ApprovalRequest, "decision_note"),
        required=False,
        allow_blank=True,
        default="",
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
    status = serializers.CharField(required=False)
