"""The jobs console: what ran, under which approved hash, each step's return code, duration and
output; submit a manifest, cancel, re-run from the failed step. Every button calls
``automation.services``; no rule lives here."""

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from backoffice.errors import DomainError
from claims.admin import AuditHistoryMixin, admin_actor, apply_each, report

from . import services
from .models import Job, JobStep

STEP_FIELDS = [
    "position",
    "step_id",
    "status",
    "argv",
    "env_names",
    "timeout",
    "attempts",
    "returncode",
    "timed_out",
    "duration_ms",
    "dry_run",
    "stdout",
    "stderr",
]


class JobStepInline(admin.TabularInline):
    """Steps are written by the runner alone."""

    model = JobStep
    fields = tuple(STEP_FIELDS)
    readonly_fields = STEP_FIELDS
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SubmitForm(forms.Form):
    manifest = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 20, "cols": 90}),
        help_text="JSON: name, optional work_item and concurrency, steps (docs/automation.md).",
    )
    live = forms.BooleanField(
        required=False,
        help_text="Run for real once approved (only where AUTOMATION_ALLOW_EXECUTION is on).",
    )

    def clean_manifest(self) -> Any:
        try:
            return json.loads(self.cleaned_data["manifest"])
        except json.JSONDecodeError as error:
            raise forms.ValidationError(f"Not JSON: {error}") from None


@admin.register(Job)
class JobAdmin(AuditHistoryMixin):
    list_display = [
        "short_id",
        "name",
        "status",
        "mode",
        "hash",
        "submitted_by",
        "approval_link",
        "runs",
        "created_at",
        "finished_at",
    ]
    list_display_links = ["short_id", "name"]
    list_filter = ["status", "dry_run"]
    list_select_related = ["submitted_by", "approval"]
    search_fields = ["name", "manifest_sha256", "agent_id"]
    date_hierarchy = "created_at"
    actions = ["cancel", "rerun"]
    inlines = [JobStepInline]
    fields = [
        ("name", "status", "mode"),
        ("manifest_sha256", "approval_link"),
        ("submitted_by", "agent_id", "live"),
        ("story", "todolist", "fencing_token"),
        ("concurrency", "runs", "cancel_requested"),
        "reason",
        ("worker", "heartbeat_at"),
        ("approved_at", "started_at", "finished_at"),
        "manifest",
    ]
    readonly_fields = ["mode", "approval_link"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(services.CANCEL_PERMISSION)

    def has_rerun_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(services.RERUN_PERMISSION)

    @admin.display(description="Id", ordering="id")
    def short_id(self, job: Job) -> str:
        return job.short_id

    @admin.display(description="Mode", ordering="dry_run")
    def mode(self, job: Job) -> str:
        return "dry run" if job.dry_run else "LIVE"

    @admin.display(description="Approved sha256", ordering="manifest_sha256")
    def hash(self, job: Job) -> str:
        return job.short_hash

    @admin.display(description="Approval request")
    def approval_link(self, job: Job) -> str:
        url = reverse("admin:claims_approvalrequest_change", args=[job.approval_id])
        return format_html(
            '<a href="{}">{} ({})</a>', url, job.approval.short_id, job.approval.status
        )

    def _each(self, request: HttpRequest, queryset: QuerySet[Job], change: Any, done: str) -> None:
        changed, skipped = apply_each(queryset, change, lambda job: job.short_id)
        report(request, done, changed, skipped)

    @admin.action(description="Cancel the selected jobs", permissions=["cancel"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        actor = admin_actor(request)
        self._each(
            request, queryset, lambda job: services.cancel(job.pk, actor=actor)[1], "cancelled"
        )

    @admin.action(
        description="Re-run the selected jobs from their failed step", permissions=["rerun"]
    )
    def rerun(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        actor = admin_actor(request)
        self._each(
            request, queryset, lambda job: bool(services.rerun(job.pk, actor=actor)), "queued again"
        )

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        """Submit a manifest: the job and its approval request, through ``services.submit``."""
        form = SubmitForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                job = services.submit(
                    manifest_data=form.cleaned_data["manifest"],
                    live=form.cleaned_data["live"],
                    actor=admin_actor(request),
                )
            except DomainError as error:
                for where, problem in error.context.get(
                    "fields", error.context.get("steps", {})
                ).items():
                    form.add_error(None, f"{where}: {problem}")
                if not form.errors:
                    form.add_error(None, error.message)
            else:
                messages.success(
                    request,
                    f"Job {job.short_id} submitted; approval request {job.approval.short_id} "
                    f"binds sha256 {job.short_hash}.",
                )
                return HttpResponseRedirect(reverse("admin:automation_job_change", args=[job.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Submit a manifest",
            "form": form,
        }
        return TemplateResponse(request, "admin/automation/job/submit.html", context)
