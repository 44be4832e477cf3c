"""Callbacks in the admin: read-only, with the one thing staff do, requeue failed or dead ones
(``services.requeue``: permission check and audit included)."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from backoffice.actors import Actor, Source
from backoffice.admin_mixins import ReadOnlyAdminMixin
from backoffice.errors import DomainError

from . import services
from .models import Callback


@admin.register(Callback)
class CallbackAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "idempotency_key", "url", "status", "attempts", "last_status_code"]
    list_filter = ["status"]
    search_fields = ["idempotency_key", "target__url"]
    actions = ["requeue_selected"]

    @admin.display(description="URL")
    def url(self, callback: Callback) -> str:
        return callback.target.url

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(services.REQUEUE_PERMISSION)

    @admin.action(description="Requeue selected callbacks", permissions=["requeue"])
    def requeue_selected(self, request: HttpRequest, queryset: QuerySet[Callback]) -> None:
        actor = Actor(source=Source.ADMIN, user=request.user)
        outcomes: list[Any] = []
        for callback in queryset.order_by("id"):
            try:
                requeued = services.requeue(callback.pk, actor=actor)
            except DomainError as error:
                outcomes.append(f"#{callback.pk}: {error.message}")
            else:
                outcomes.append(f"#{callback.pk}: {'requeued' if requeued else 'already queued'}")
        self.message_user(request, "; ".join(outcomes) or "Nothing selected.", messages.INFO)
