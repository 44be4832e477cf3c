"""The bridge in the admin: dead letters to requeue, account links, and inbound updates to read.

Outbound messages are written by the outbox only, so they are read-only here; the one thing staff
can do is requeue failed or dead ones, which goes through ``dead_letters.requeue`` (permission
check and audit included) after a confirmation page.
"""

import re
import uuid

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.timesince import timesince

from backoffice.actors import Actor, Source
from backoffice.admin_mixins import (
    LIST_PER_PAGE,
    AuditHistoryMixin,
    DefaultChoiceFilter,
    ReadOnlyAdminMixin,
    cut,
    status_label,
)
from backoffice.errors import DomainError

from . import dead_letters, inbound
from .models import InboundUpdate, OutboundMessage, TelegramAccount

Status = OutboundMessage.Status

CONFIRMATION_TEMPLATE = "admin/telegram_bridge/outboundmessage/requeue_confirmation.html"

# Messages about an approval request carry its id in their dedupe key: "approval:<hex>:…".
APPROVAL_KEY = re.compile(r"approval:([0-9a-f]{32}):")


class DeliveryStatusFilter(DefaultChoiceFilter):
    """Opens on the messages that need attention: failed and dead."""

    title = "status"
    parameter_name = "delivery"
    default = "attention"
    ALL = "all"

    def lookups(self, request, model_admin):
        return [(self.ALL, "All"), *Status.choices]

    def choices(self, changelist):
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "Failed or dead",
        }
        yield from super().choices(changelist)

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset.filter(status__in=dead_letters.REQUEUABLE)
        if value == self.ALL:
            return queryset
        return queryset.filter(status=value)


@admin.register(OutboundMessage)
class OutboundMessageAdmin(ReadOnlyAdminMixin, AuditHistoryMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "method",
        "chat_id",
        "approval",
        "status_label",
        "attempts",
        "requeues",
        "error",
        "age",
        "requeue_button",
    ]
    list_filter = [DeliveryStatusFilter, "method"]
    list_per_page = LIST_PER_PAGE
    search_fields = ["dedupe_key", "last_error", "=chat_id", "=id"]
    ordering = ["-created_at", "-id"]
    actions = ["requeue_selected"]
    readonly_fields = ["approval", *(field.name for field in OutboundMessage._meta.fields)]

    def has_requeue_permission(self, request):
        return request.user.has_perm(dead_letters.REQUEUE_PERMISSION)

    @admin.display(description="approval request")
    def approval(self, message):
        """A link to the request the message is about, read from its key (no query per row)."""
        found = APPROVAL_KEY.match(message.dedupe_key)
        if found is None:
            return "-"
        approval_id = uuid.UUID(found[1])
        url = reverse("admin:claims_approvalrequest_change", args=[approval_id])
        return format_html('<a href="{}">{}</a>', url, found[1][:8])

    @admin.display(description="status", ordering="status")
    def status_label(self, message):
        return status_label(message.status, message.get_status_display())

    def get_list_display(self, request):
        if self.has_requeue_permission(request):
            return self.list_display
        return [name for name in self.list_display if name != "requeue_button"]

    @admin.display(description="error")
    def error(self, message):
        code = f"[{message.last_status_code}] " if message.last_status_code else ""
        text = f"{code}{message.last_error}"
        return cut(text, 80)

    @admin.display(description="age", ordering="created_at")
    def age(self, message):
        return f"{timesince(message.created_at)} ago"

    @admin.display(description="")
    def requeue_button(self, message):
        if message.status not in dead_letters.REQUEUABLE:
            return ""
        url = reverse("admin:telegram_bridge_outboundmessage_requeue", args=[message.pk])
        return format_html('<a class="button requeue" href="{}">Requeue…</a>', url)

    def get_urls(self):
        requeue = self.admin_site.admin_view(self.requeue_view)
        return [
            path(
                "<int:message_id>/requeue/",
                requeue,
                name="telegram_bridge_outboundmessage_requeue",
            ),
            *super().get_urls(),
        ]

    def requeue_view(self, request, message_id):
        """GET asks for confirmation; POST (with the CSRF token) requeues."""
        if not self.has_requeue_permission(request):
            raise PermissionDenied
        message = get_object_or_404(OutboundMessage, pk=message_id)
        if request.method == "POST":
            self._requeue(request, [message])
            return redirect("admin:telegram_bridge_outboundmessage_changelist")
        return self._confirmation(request, [message], bulk=False)

    @admin.action(description="Requeue selected messages", permissions=["requeue"])
    def requeue_selected(self, request, queryset):
        if request.POST.get("post") == "yes":
            self._requeue(request, queryset)
            return None
        return self._confirmation(request, queryset, bulk=True)

    def _confirmation(self, request, queryset, *, bulk):
        context = {
            **self.admin_site.each_context(request),
            "title": "Requeue messages?",
            "crumb": "Requeue",
            "opts": self.model._meta,
            "queryset": queryset,
            "bulk": bulk,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, CONFIRMATION_TEMPLATE, context)

    def _requeue(self, request, queryset):
        """Requeue each message through dead_letters and say what happened to every one."""
        actor = Actor(source=Source.ADMIN, user=request.user)
        try:
            report = dead_letters.requeue_many([message.pk for message in queryset], actor=actor)
        except DomainError as error:
            self.message_user(request, error.message, messages.ERROR)
            return
        level = messages.WARNING if report.skipped else messages.SUCCESS
        self.message_user(request, str(report), level)


@admin.register(TelegramAccount)
class TelegramAccountAdmin(admin.ModelAdmin):
    list_display = ["telegram_user_id", "telegram_username", "user", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["telegram_user_id", "telegram_username", "user__username"]
    autocomplete_fields = ["user"]


@admin.register(InboundUpdate)
class InboundUpdateAdmin(ReadOnlyAdminMixin, AuditHistoryMixin, admin.ModelAdmin):
    """Updates as Telegram sent them and what became of them; the record is not to be edited.

    A failed update (a handler error, or quarantined on arrival) can be retried once its cause is
    fixed, through ``inbound.retry`` (permission check and audit included).
    """

    list_display = ["update_id", "status_label", "received_at", "processed_at", "short_error"]
    list_filter = ["status"]
    list_per_page = LIST_PER_PAGE
    search_fields = ["=update_id", "error"]
    ordering = ["-received_at", "-update_id"]
    readonly_fields = [field.name for field in InboundUpdate._meta.fields]
    actions = ["retry_selected"]

    def has_retry_permission(self, request):
        return request.user.has_perm(inbound.RETRY_PERMISSION)

    @admin.action(description="Retry selected failed updates", permissions=["retry"])
    def retry_selected(self, request, queryset):
        actor = Actor(source=Source.ADMIN, user=request.user)
        outcomes = []
        for update in queryset.order_by("update_id"):
            try:
                row = inbound.retry(update.pk, actor=actor)
            except DomainError as error:
                outcomes.append(f"{update.update_id}: {error.message}")
            else:
                outcomes.append(f"{row.update_id}: {row.status}")
        self.message_user(request, "; ".join(outcomes) or "Nothing selected.", messages.INFO)

    @admin.display(description="status", ordering="status")
    def status_label(self, update):
        return status_label(update.status, update.get_status_display())

    @admin.display(description="error")
    def short_error(self, update):
        return cut(update.error, 80)
