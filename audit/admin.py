"""The audit trail in the Django admin: searchable, filterable and strictly read-only.

The table grows without end, so the list avoids what costs a full scan: the page count of an
unfiltered list is PostgreSQL's estimate (``paginators.EstimatedCountPaginator``), the "of N in
all" count is not shown, the filters read indexes (``filters``), and the search matches indexed
columns exactly (an object id, a trace id) or by prefix (a request's short id).
"""

import json
import re

from django.contrib import admin
from django.db.models import Q
from django.utils.html import format_html

from backoffice.admin_mixins import LIST_PER_PAGE, ReadOnlyAdminMixin

from . import presentation
from .filters import ActionFilter, ActorFilter, ObjectTypeFilter, WhenFilter
from .models import AuditEvent, Checkpoint
from .paginators import EstimatedCountPaginator

# The short id everyone sees (the first hex digits of a request's UUID), six to 32 of them.
SHORT_ID = re.compile(r"[0-9a-f]{6,32}")
UUID_GROUPS = (8, 4, 4, 4, 12)
SHORT_DIGEST = 12


def uuid_prefix(term: str) -> str | None:
    """``term`` as the start of a UUID as stored in ``object_id`` (with its dashes), or None."""
    digits = term.strip().lower().replace("-", "")
    if not SHORT_ID.fullmatch(digits):
        return None
    groups, start = [], 0
    for size in UUID_GROUPS:
        if start >= len(digits):
            break
        groups.append(digits[start : start + size])
        start += size
    return "-".join(groups)


def short_digest(digest: str) -> str:
    """The first hex digits of a chain hash, the whole of it on hover (to compare by eye with a
    published checkpoint or ``audit_verify``'s report)."""
    return format_html('<code title="{}">{}…</code>', digest, digest[:SHORT_DIGEST])


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Events are written by services only; here nobody adds, edits or deletes one."""

    list_display = ["timestamp", "action", "who", "source", "object_type", "object", "trace"]
    list_filter = [WhenFilter, ActionFilter, "source", ActorFilter, ObjectTypeFilter]
    list_select_related = ["actor"]
    search_fields = ["object_id", "trace_id"]  # matched in get_search_results, not by Django
    search_help_text = "An object id, a request's short id (6+ characters), or a trace id."
    paginator = EstimatedCountPaginator
    list_per_page = LIST_PER_PAGE
    show_full_result_count = False
    fields = [
        "timestamp",
        ("action", "source"),
        ("actor", "actor_label"),
        ("object_type", "object_link"),
        "trace_id",
        "pretty_details",
        ("seq", "short_hash", "short_prev_hash"),
    ]
    readonly_fields = ["object_link", "pretty_details", "seq", "short_hash", "short_prev_hash"]
    actions = None

    @admin.display(description="Hash")
    def short_hash(self, event):
        return short_digest(event.hash)

    @admin.display(description="Previous hash")
    def short_prev_hash(self, event):
        return short_digest(event.prev_hash)

    @admin.display(description="Who", ordering="actor_label")
    def who(self, event):
        return presentation.who(event)

    @admin.display(description="Object id", ordering="object_id")
    def object(self, event):
        url = presentation.object_url(event)
        if not url:
            return event.object_id
        shown = event.object_id if len(event.object_id) <= 12 else f"{event.object_id[:8]}…"
        return format_html('<a href="{}" title="{}">{}</a>', url, event.object_id, shown)

    @admin.display(description="Object id")
    def object_link(self, event):
        return self.object(event)

    @admin.display(description="Trace", ordering="trace_id")
    def trace(self, event):
        """The start of the trace id, whole on hover; the link lists every event of the trace."""
        if len(event.trace_id) <= 12:
            return event.trace_id
        return format_html(
            '<a href="?q={}" title="{}">{}…</a>',
            event.trace_id,
            event.trace_id,
            event.trace_id[:10],
        )

    @admin.display(description="Details")
    def pretty_details(self, event):
        return format_html(
            "<pre>{}</pre>", json.dumps(event.details, indent=2, sort_keys=True, ensure_ascii=False)
        )

    def get_search_results(self, request, queryset, search_term):
        """Events whose object id or trace id is the term, or whose object is the request with
        this short id; each an index lookup (Django's own search would scan every row)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        found = Q(object_id=term) | Q(trace_id=term)
        prefix = uuid_prefix(term)
        if prefix is not None:
            # The range lets any collation use the index; LIKE alone needs the C collation.
            found |= Q(object_id__gte=prefix, object_id__lt=f"{prefix}g") & Q(
                object_id__startswith=prefix
            )
        return queryset.filter(found), False


CHECKPOINT_FIELDS = ("seq", "timestamp", "head_hash", "short_signature")


@admin.register(Checkpoint)
class CheckpointAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The chain heads signed and published so far: what ``audit_verify`` checks the chain
    against. Written by ``audit.services.checkpoint()`` alone."""

    list_display = fields = readonly_fields = CHECKPOINT_FIELDS
    list_per_page = LIST_PER_PAGE
    actions = None

    @admin.display(description="Chain head hash")
    def head_hash(self, checkpoint):
        return short_digest(checkpoint.hash)

    @admin.display(description="Signature")
    def short_signature(self, checkpoint):
        return short_digest(checkpoint.signature)
