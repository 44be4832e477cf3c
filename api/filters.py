"""Query-string filters of the list endpoints."""

from datetime import UTC

import django_filters
from django.core.exceptions import ValidationError
from django.db.models import Q
from django_filters.fields import IsoDateTimeField

from audit.models import AuditEvent
from automation.models import Job
from backoffice.actors import Source
from claims.models import ApprovalRequest, Claim
from telegram_bridge.models import OutboundMessage


class UtcDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, moved to UTC: PostgreSQL refuses offsets past ±15:59."""

    def to_python(self, value):
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise ValidationError("Enter a date-time within the years 1 to 9999.") from None


class DateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


class ClaimFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(
        choices=[("live", "Live"), ("expired", "Expired or released")],
        method="filter_state",
        help_text="live: held right now; expired: expired or released.",
    )

    class Meta:
        model = Claim
        fields = ["owner", "agent_id", "story", "todolist", "state"]

    def filter_state(self, queryset, name, value):
        return queryset.live() if value == "live" else queryset.ended()


class ApprovalFilter(django_filters.FilterSet):
    requester = django_filters.CharFilter(
        field_name="requested_by", help_text="Who asked (the request's requested_by)."
    )
    created_after = DateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = DateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = ApprovalRequest
        fields = ["status", "kind", "requester", "created_after", "created_before"]


class AuditEventFilter(django_filters.FilterSet):
    since = DateTimeFilter(field_name="timestamp", lookup_expr="gte")
    until = DateTimeFilter(field_name="timestamp", lookup_expr="lt")
    actor = django_filters.CharFilter(
        method="filter_actor", help_text="A username or an agent label, exactly."
    )
    source = django_filters.ChoiceFilter(choices=Source.choices)

    class Meta:
        model = AuditEvent
        fields = ["since", "until", "action", "actor", "source", "object_type", "object_id"]

    def filter_actor(self, queryset, name, value):
        return queryset.filter(Q(actor_label=value) | Q(actor__username=value))


class OutboundMessageFilter(django_filters.FilterSet):
    class Meta:
        model = OutboundMessage
        fields = ["status"]


class JobFilter(django_filters.FilterSet):
    submitted_by = django_filters.CharFilter(
        field_name="submitted_by__username", help_text="Who submitted it (username)."
    )

    class Meta:
        model = Job
        fields = ["status", "name", "submitted_by", "dry_run"]
