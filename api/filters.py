"""Query-string filters of the list endpoints."""

import django_filters
from django.db.models import Q
from django.utils import timezone

from audit.actors import Source
from audit.models import AuditEvent
from claims.models import ApprovalRequest, Claim
from telegram_bridge.models import OutboundMessage


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
        live = Q(released_at__isnull=True, expires_at__gt=timezone.now())
        return queryset.filter(live) if value == "live" else queryset.exclude(live)


class ApprovalFilter(django_filters.FilterSet):
    requester = django_filters.CharFilter(
        field_name="requested_by", help_text="Who asked (the request's requested_by)."
    )
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = ApprovalRequest
        fields = ["status", "kind", "requester", "created_after", "created_before"]


class AuditEventFilter(django_filters.FilterSet):
    since = django_filters.IsoDateTimeFilter(field_name="timestamp", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="timestamp", lookup_expr="lt")
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
