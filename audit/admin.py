"""The audit trail in the Django admin: searchable, filterable and strictly read-only."""

import json

from django.contrib import admin
from django.utils.html import format_html

from backoffice.admin_mixins import ReadOnlyAdminMixin

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Events are written by services only; here nobody adds, edits or deletes one."""

    date_hierarchy = "timestamp"
    list_display = ["timestamp", "action", "who", "source", "object_type", "object_id", "trace_id"]
    list_filter = ["action", "source", ("actor", admin.RelatedOnlyFieldListFilter), "object_type"]
    list_select_related = ["actor"]
    search_fields = ["=object_id", "=trace_id", "actor_label"]
    fields = [
        "timestamp",
        ("action", "source"),
        ("actor", "actor_label"),
        ("object_type", "object_id"),
        "trace_id",
        "pretty_details",
    ]
    readonly_fields = ["pretty_details"]
    actions = None

    @admin.display(description="Who", ordering="actor_label")
    def who(self, event):
        return event.actor_label or (event.actor.get_username() if event.actor else "")

    @admin.display(description="Details")
    def pretty_details(self, event):
        return format_html(
            "<pre>{}</pre>", json.dumps(event.details, indent=2, sort_keys=True, ensure_ascii=False)
        )
