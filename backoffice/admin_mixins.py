"""Admin building blocks shared by the apps."""

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from audit.selectors import events_for

HISTORY_TEMPLATE = "admin/audit_history_page.html"
# Rows per page of the long lists: rendering a row costs more than reading it, and half of
# Django's 100 rows is still more than anyone on call reads before searching or filtering.
LIST_PER_PAGE = 50


class ReadOnlyAdminMixin:
    """No add, change or delete: the records change only through services, or never (audit).

    Staff can still view them, and the admins add buttons and actions that call services.
    """

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AuditHistoryMixin(admin.ModelAdmin):
    """The object's audit events, oldest first: at the bottom of its change page, and as its
    "History" page in place of Django's LogEntry history, which services never write."""

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        extra_context = {**(extra_context or {}), **self.change_page_context(request, obj)}
        return super().change_view(request, object_id, form_url, extra_context)

    def change_page_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        if obj is None:
            return {}
        return {"history": events_for(obj).select_related("actor")}

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        obj = self.get_object(request, object_id)
        if obj is None:
            raise Http404(f"No {self.opts.verbose_name} with id {object_id}.")
        if not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": f"History: {obj}",
            "subtitle": None,
            "opts": self.opts,
            "object": obj,
            "history": events_for(obj).select_related("actor"),
            **(extra_context or {}),
        }
        return TemplateResponse(request, HISTORY_TEMPLATE, context)


class DefaultChoiceFilter(admin.SimpleListFilter):
    """A filter that is never "All" by default: a list opens on what needs attention.

    ``default`` is the choice taken without a parameter; the lookups should offer a way to see
    everything.
    """

    default = ""

    def choices(self, changelist):
        current = self.value() or self.default
        for value, label in self.lookup_choices:
            yield {
                "selected": current == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }


class RecentFilter(admin.SimpleListFilter):
    """Recent windows of a date field, in place of a date hierarchy: its year and month links
    come from ``SELECT DISTINCT date_trunc(…)`` over the whole table, a scan of every row.

    Subclasses name the ``field_name`` (indexed, so a window is a range read) and a ``title``.
    """

    field_name = ""
    parameter_name = "when"
    WINDOWS = {
        "hour": ("Last hour", timedelta(hours=1)),
        "day": ("Last 24 hours", timedelta(days=1)),
        "week": ("Last 7 days", timedelta(days=7)),
        "month": ("Last 30 days", timedelta(days=30)),
    }

    def lookups(self, request, model_admin):
        return [(key, label) for key, (label, _) in self.WINDOWS.items()]

    def queryset(self, request, queryset: QuerySet[Any]) -> QuerySet[Any]:
        window = self.WINDOWS.get(self.value() or "")
        if window is None:
            return queryset
        return queryset.filter(**{f"{self.field_name}__gte": timezone.now() - window[1]})


def cut(text: str, chars: int) -> SafeString | str:
    """``text`` cut to ``chars`` characters for a list column, whole in the hover title."""
    if len(text) <= chars:
        return text
    return format_html('<span title="{}">{}…</span>', text, text[: chars - 1])


def status_label(value: str, label: str) -> SafeString:
    """A status in colour and in words (the colour alone says nothing to some readers)."""
    return format_html('<span class="status status-{}">{}</span>', value, label)
