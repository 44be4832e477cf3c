"""Claims and approval requests in the Django admin.

Nothing is edited by hand here: every change is a click that calls ``claims.services`` with the
staff user as actor, so the rules and the audit trail are the same as for the API, the CLI and
Telegram. Domain errors become admin messages in ``apply_each``, the one place that catches them.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from backoffice.actors import Actor, Source
from backoffice.admin_mixins import (
    LIST_PER_PAGE,
    AuditHistoryMixin,
    DefaultChoiceFilter,
    ReadOnlyAdminMixin,
    RecentFilter,
    cut,
    status_label,
)
from backoffice.errors import DomainError, InvalidTransition

from . import selectors, services
from .decision_times import decision_windows
from .durations import lease_state, span
from .models import ApprovalPolicy, ApprovalRequest, Claim, Decision, Vote
from .policies import Rules, refusal
from .voting import tally


def admin_actor(request):
    return Actor(source=Source.ADMIN, user=request.user)


def _why_skipped(label, error):
    """A short reason naming the object, e.g. "3f2a9c1b is denied"."""
    if (
        isinstance(error, InvalidTransition)
        and error.status not in ApprovalRequest.AWAITING_DECISION
    ):
        return f"{label} is {error.status}"
    return error.message.rstrip(".")


def apply_each(objects, change, label, *, unchanged="unchanged"):
    """Call ``change(obj)`` for each object; returns how many changed and why others did not.

    ``change`` returns whether it changed anything; an object it left as it was is reported as
    "<label> is <unchanged>". Each call is its own transaction, so one refusal does not undo the
    others.
    """
    changed, skipped = 0, []
    for obj in objects:
        try:
            if change(obj):
                changed += 1
            else:
                skipped.append(f"{label(obj)} is {unchanged}")
        except DomainError as error:
            skipped.append(_why_skipped(label(obj), error))
    return changed, skipped


def report(request, done, changed, skipped, votes=()):
    """One message such as "2 approved; 1 skipped: 3f2a9c1b is denied".

    ``votes`` are the requests a vote was counted on that it did not decide yet, each with its
    count: "1 vote counted: 3f2a9c1b 1 of 2 approvals, waiting for bob".
    """
    parts = [f"{changed} {done}"] if changed or not votes else []
    if votes:
        parts.append(
            f"{len(votes)} vote{'s' if len(votes) > 1 else ''} counted: " + "; ".join(votes)
        )
    text = "; ".join(parts)
    changed += len(votes)
    if skipped:
        text += f"; {len(skipped)} skipped: " + "; ".join(skipped)
    level = messages.SUCCESS if not skipped else messages.WARNING if changed else messages.ERROR
    messages.add_message(request, level, text)


# --- Claims ---------------------------------------------------------------------------------


class LeaseStateFilter(admin.SimpleListFilter):
    title = "lease"
    parameter_name = "lease"

    def lookups(self, request, model_admin):
        return [
            ("live", "Live"),
            ("expired", "Expired"),
            ("released", "Released"),
            ("stale", "Stale (expired unreleased, held a day+, taken over 3+ times)"),
            ("frozen", "Frozen"),
        ]

    def queryset(self, request, queryset):
        if self.value() == "live":
            return queryset.live()
        if self.value() == "expired":
            return queryset.ended().filter(released_at__isnull=True)
        if self.value() == "released":
            return queryset.filter(released_at__isnull=False)
        if self.value() == "stale":
            return queryset.filter(pk__in=selectors.stale_claims().values("pk"))
        if self.value() == "frozen":
            return queryset.filter(frozen_at__isnull=False)
        return queryset


class ReasonActionForm(helpers.ActionForm):
    """The bulk actions' form, with the reason every staff action on a lease must give."""

    reason = forms.CharField(
        required=False, max_length=2000, label="Reason (required, kept in the audit trail)"
    )


# What each lease button does: the service it calls and the words for the message.
LEASE_STEPS = {
    "force_release": "force-released",
    "take_over": "taken over",
    "freeze": "frozen",
    "unfreeze": "unfrozen",
}


@admin.register(Claim)
class ClaimAdmin(ReadOnlyAdminMixin, AuditHistoryMixin, admin.ModelAdmin):
    """The lease console: leases change through their holders, or through staff buttons here.

    Force release, take over and freeze need a reason, which the audit trail keeps. The lease
    token is never shown: only its holder has it.
    """

    change_form_template = "admin/claims/claim/change_form.html"
    action_form = ReasonActionForm
    list_display = [
        "work_item",
        "holder",
        "lease",
        "fencing_token",
        "waiting",
        "frozen_label",
        "takeovers",
        "acquired_at",
    ]
    # No filter by story: one link per distinct story does not scale; the search finds stories.
    list_filter = [LeaseStateFilter]
    list_per_page = LIST_PER_PAGE
    search_fields = ["story", "todolist", "owner", "agent_id"]
    search_help_text = "Story, todo list, holder or agent id."
    show_full_result_count = False
    ordering = ["story", "todolist"]
    actions = ["force_release", "take_over", "freeze", "unfreeze"]
    fields = [
        ("story", "todolist"),
        ("holder", "agent_id", "fingerprint"),
        ("acquired_at", "expires_at", "lease", "ttl"),
        "released_at",
        ("fencing_token", "version", "takeovers"),
        ("frozen_at", "frozen_by", "frozen_reason"),
        "previous",
        ("created_at", "updated_at"),
    ]
    readonly_fields = ["holder", "lease", "ttl", "previous"]

    @admin.display(description="Work item", ordering="story")
    def work_item(self, claim):
        return claim.work_item

    @admin.display(description="Holder", ordering="owner")
    def holder(self, claim):
        return claim.holder

    @admin.display(description="Previous holder")
    def previous(self, claim):
        return claim.previous_holder or "-"

    @admin.display(description="Lease", ordering="expires_at")
    def lease(self, claim):
        return lease_state(claim.expires_at, claim.released_at)

    @admin.display(description="TTL", ordering="ttl_seconds")
    def ttl(self, claim):
        return span(claim.ttl_seconds)

    def get_queryset(self, request):
        return selectors.with_waiting_count(super().get_queryset(request))

    @admin.display(description="Waiting", ordering="waiting")
    def waiting(self, claim):
        return claim.waiting

    @admin.display(description="Frozen", boolean=True, ordering="frozen_at")
    def frozen_label(self, claim):
        return claim.frozen

    def has_force_release_permission(self, request):
        return request.user.has_perm(services.FORCE_RELEASE_PERMISSION)

    def _lease_step(self, request, queryset, step, reason):
        """Run one staff step on each claim and report; every step but unfreeze needs a reason."""
        reason = (reason or "").strip()
        if step != "unfreeze" and not reason:
            messages.error(request, f"Give a reason: nothing is {LEASE_STEPS[step]} without one.")
            return
        actor = admin_actor(request)
        change = {
            "force_release": lambda c: services.force_release(c.pk, actor=actor, reason=reason)[1],
            "take_over": lambda c: bool(services.take_over(c.pk, actor=actor, reason=reason)),
            "freeze": lambda c: bool(services.freeze(c.pk, actor=actor, reason=reason)),
            "unfreeze": lambda c: services.unfreeze(c.pk, actor=actor).changed,
        }[step]
        unchanged = {"force_release": "already released", "unfreeze": "not frozen"}
        changed, skipped = apply_each(queryset, change, str, unchanged=unchanged.get(step, ""))
        report(request, LEASE_STEPS[step], changed, skipped)

    @admin.action(description="Force release the selected claims", permissions=["force_release"])
    def force_release(self, request, queryset):
        self._lease_step(request, queryset, "force_release", request.POST.get("reason"))

    @admin.action(description="Take over the selected claims", permissions=["force_release"])
    def take_over(self, request, queryset):
        self._lease_step(request, queryset, "take_over", request.POST.get("reason"))

    @admin.action(description="Freeze the selected work items", permissions=["force_release"])
    def freeze(self, request, queryset):
        self._lease_step(request, queryset, "freeze", request.POST.get("reason"))

    @admin.action(description="Unfreeze the selected work items", permissions=["force_release"])
    def unfreeze(self, request, queryset):
        self._lease_step(request, queryset, "unfreeze", "")

    # --- The change page: lease buttons, the waiting line and the audit history --------------

    def get_urls(self):
        return [
            path(
                "<path:object_id>/lease/",
                self.admin_site.admin_view(self.lease_view),
                name="claims_claim_lease",
            ),
            *super().get_urls(),
        ]

    def change_page_context(self, request, claim):
        context = super().change_page_context(request, claim)
        if claim is not None:
            context["waiting_line"] = selectors.waiting_line(claim)
            if self.has_force_release_permission(request):
                context["lease_url"] = reverse("admin:claims_claim_lease", args=[claim.pk])
                steps = ["force_release", "take_over", "unfreeze" if claim.frozen else "freeze"]
                if claim.released_at is not None:
                    steps.remove("force_release")
                context["lease_steps"] = [
                    (step, step.replace("_", " ").capitalize()) for step in steps
                ]
        return context

    def lease_view(self, request, object_id):
        """A button on the change page: one staff step on this claim, then back to the page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_force_release_permission(request):
            raise PermissionDenied
        claim = self.get_object(request, object_id)
        if claim is None:
            messages.error(request, f"No claim with id {object_id}.")
            return HttpResponseRedirect(reverse("admin:claims_claim_changelist"))
        step = request.POST.get("step", "")
        if step in LEASE_STEPS:
            queryset = self.get_queryset(request).filter(pk=claim.pk)
            self._lease_step(request, queryset, step, request.POST.get("reason"))
        else:
            messages.error(request, f"Unknown step {step!r}.")
        return HttpResponseRedirect(reverse("admin:claims_claim_change", args=[claim.pk]))


# --- Approval requests ----------------------------------------------------------------------

# Every step a button or an action may take, and what the request then is.
DONE = {**dict(Decision.choices), "archive": "archived"}

BULK_CONFIRMATION_TEMPLATE = "admin/claims/approvalrequest/bulk_confirmation.html"


class CreatedFilter(RecentFilter):
    title = "asked"
    field_name = "created_at"


class ApprovalStatusFilter(DefaultChoiceFilter):
    """Opens on the pending requests, the ones someone has to act on; "All" shows every one.

    It keeps the parameter of Django's own status filter, so links to ``?status__exact=…`` work.
    """

    title = "status"
    parameter_name = "status__exact"
    default = ApprovalRequest.Status.PENDING
    ALL = "all"

    def lookups(self, request, model_admin):
        return [(self.ALL, "All"), *ApprovalRequest.Status.choices]

    def queryset(self, request, queryset):
        value = self.value() or self.default
        return queryset if value == self.ALL else queryset.filter(status=value)


class VoteInline(admin.TabularInline):
    """Who voted which way, through which channel, and when; votes change only by voting."""

    model = Vote
    extra = 0
    fields = readonly_fields = ("voter", "choice", "source", "note", "created_at", "updated_at")
    verbose_name_plural = "votes"

    def has_view_permission(self, request, obj=None):
        # Whoever sees a request sees its votes.
        return request.user.has_perm("claims.view_approvalrequest")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyAdminMixin, AuditHistoryMixin, admin.ModelAdmin):
    """Requests are asked for by agents and decided here with buttons or bulk actions.

    Approve and deny are votes under the request's policy; the list shows the count, the change
    page who voted, and the list's header how long requests waited for a decision.
    """

    change_form_template = "admin/claims/approvalrequest/change_form.html"
    change_list_template = "admin/claims/approvalrequest/change_list.html"
    inlines = [VoteInline]
    list_display = [
        "short_id",
        "kind",
        "status_label",
        "votes_counted",
        "summary",
        "requester",
        "created_at",
        "expires_at",
        "decided_by",
    ]
    list_display_links = ["short_id", "summary"]
    list_filter = [ApprovalStatusFilter, CreatedFilter, "kind", "decision_source"]
    list_per_page = LIST_PER_PAGE
    list_select_related = ["decided_by"]
    search_fields = ["text", "requested_by", "agent_id"]
    search_help_text = "Text, requester, agent id, or the first 6+ characters of the id."
    show_full_result_count = False
    readonly_fields = ["requester"]
    actions = ["approve", "deny", "postpone", "archive"]
    fields = [
        ("kind", "status"),
        "text",
        "payload",
        ("requester", "claim"),
        ("created_at", "expires_at"),
        ("decided_by", "decided_at", "decision_source"),
        "decision_note",
        ("executed_at", "archived_at"),
        ("policy", "votes_waiting"),
        "rules",
        ("reminders_sent", "next_reminder_at", "escalate_at", "escalated_at"),
    ]
    readonly_fields = ["votes_waiting"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("votes")

    @admin.display(description="Id", ordering="id")
    def short_id(self, approval):
        return approval.short_id

    @admin.display(description="Requested by", ordering="requested_by")
    def requester(self, approval):
        return approval.requester

    @admin.display(description="Status", ordering="status")
    def status_label(self, approval):
        return status_label(approval.status, approval.get_status_display())

    @admin.display(description="Votes")
    def votes_counted(self, approval):
        return tally(approval, waiting=False).counted

    @admin.display(description="Votes")
    def votes_waiting(self, approval):
        return tally(approval).summary()

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "decision_windows": decision_windows()}
        return super().changelist_view(request, extra_context)

    @admin.display(description="Request")
    def summary(self, approval):
        """Cut to fit the list; the whole text shows on hover."""
        return cut(approval.text, 90)

    def get_search_results(self, request, queryset, search_term):
        """Also find requests by the first hex digits of their id, as shown in the list."""
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        prefix = selectors.id_prefix(search_term)
        if prefix is not None:
            by_id = selectors.approvals_with_id_prefix(prefix).values("pk")
            results = queryset.filter(Q(pk__in=results.values("pk")) | Q(pk__in=by_id))
        return results, may_have_duplicates

    def has_decide_permission(self, request):
        return request.user.has_perm(services.DECIDE_PERMISSION)

    def has_archive_permission(self, request):
        return request.user.has_perm(services.ARCHIVE_PERMISSION)

    # One function per step, so a click and a bulk action take exactly the same path.
    def _step(self, request, step, note, votes):
        actor = admin_actor(request)
        if step == "archive":
            return lambda approval: services.archive(approval.pk, actor=actor).changed

        def decide(approval):
            decided = services.decide(approval.pk, step, actor=actor, note=note)
            still_waiting = decided.approval.status in ApprovalRequest.AWAITING_DECISION
            if decided.changed and still_waiting and decided.tally is not None:
                votes.append(f"{approval.short_id} {decided.tally.summary()}")
            return decided.changed

        return decide

    def _run(self, request, queryset, step, note=""):
        votes: list[str] = []
        changed, skipped = apply_each(
            queryset,
            self._step(request, step, note, votes),
            lambda approval: approval.short_id,
            unchanged=f"already {DONE[step]}",
        )
        report(request, DONE[step], changed - len(votes), skipped, votes)

    def _confirmed(self, request, queryset, step):
        """Decide in bulk only from the confirmation page, which lists the requests and takes
        a note; the first POST (from the list) shows that page."""
        if request.POST.get("post") == "yes":
            self._run(request, queryset, step, note=request.POST.get("note", "").strip())
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": f"{step.capitalize()} {queryset.count()} request(s)?",
            "opts": self.opts,
            "queryset": queryset.order_by("created_at"),
            "step": step,
            "crumb": step.capitalize(),
            "done": DONE[step],
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, BULK_CONFIRMATION_TEMPLATE, context)

    @admin.action(description="Approve the selected requests…", permissions=["decide"])
    def approve(self, request, queryset):
        return self._confirmed(request, queryset, Decision.APPROVE)

    @admin.action(description="Deny the selected requests…", permissions=["decide"])
    def deny(self, request, queryset):
        return self._confirmed(request, queryset, Decision.DENY)

    @admin.action(description="Postpone the selected requests…", permissions=["decide"])
    def postpone(self, request, queryset):
        return self._confirmed(request, queryset, Decision.POSTPONE)

    @admin.action(description="Archive the selected requests", permissions=["archive"])
    def archive(self, request, queryset):
        self._run(request, queryset, "archive")

    # --- The change page: decision buttons and the audit history -----------------------------

    def get_urls(self):
        return [
            path(
                "<path:object_id>/step/",
                self.admin_site.admin_view(self.step_view),
                name="claims_approvalrequest_step",
            ),
            *super().get_urls(),
        ]

    def available_steps(self, request, approval):
        """The buttons to show: steps the request's status allows and the user may take, under
        the request's policy (its approver groups, separation of duties)."""
        steps: list[str] = []
        may_decide = self.has_decide_permission(request) and not refusal(approval, request.user)
        if may_decide and approval.expires_at > timezone.now():
            steps += [
                step
                for step, (_, allowed_from) in services.DECISIONS.items()
                if approval.status in allowed_from
            ]
        if self.has_archive_permission(request) and approval.status in services.ARCHIVABLE:
            steps.append("archive")
        return steps

    def change_page_context(self, request, approval):
        context = super().change_page_context(request, approval)
        if approval is not None:
            context["step_url"] = reverse("admin:claims_approvalrequest_step", args=[approval.pk])
            steps = self.available_steps(request, approval)
            # Under a quorum a click is one vote among several; the buttons say so.
            quorum = Rules.from_request(approval).quorum
            labels = {"approve": "Vote to approve", "deny": "Vote to deny"} if quorum > 1 else {}
            context["steps"] = [(step, labels.get(step, step.capitalize())) for step in steps]
            # A note explains a decision; archiving alone needs none.
            context["takes_note"] = any(step != "archive" for step in steps)
        return context

    def step_view(self, request, object_id):
        """A button on the change page: one step for one request, then back to the page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        approval = self.get_object(request, object_id)
        if approval is None:
            messages.error(request, f"No approval request with id {object_id}.")
            return HttpResponseRedirect(reverse("admin:claims_approvalrequest_changelist"))
        step = request.POST.get("step", "")
        if step in DONE:
            queryset = self.get_queryset(request).filter(pk=approval.pk)
            self._run(request, queryset, step, note=request.POST.get("note", "").strip())
        else:
            messages.error(request, f"Unknown step {step!r}.")
        # The dashboard's buttons come back to the dashboard; the page's own to the page.
        back = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(
            back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            back = reverse("admin:claims_approvalrequest_change", args=[approval.pk])
        return HttpResponseRedirect(back)


# --- Approval policies ----------------------------------------------------------------------


@admin.register(ApprovalPolicy)
class ApprovalPolicyAdmin(AuditHistoryMixin, admin.ModelAdmin):
    """Policies are edited here; every save and delete goes through ``services`` and is audited.

    A change applies to requests made from then on: open requests keep the rules they copied.
    """

    change_form_template = "admin/claims/approvalpolicy/change_form.html"
    list_display = ["name", "kind", "story_pattern", "quorum", "deadline", "default_outcome"]
    list_filter = ["kind", "default_outcome"]
    search_fields = ["name", "story_pattern"]
    filter_horizontal = ["approver_groups"]
    fieldsets = [
        (None, {"fields": ["name", ("kind", "story_pattern")]}),
        (
            "Who decides",
            {
                "fields": [
                    ("quorum", "deny_needs_quorum"),
                    "approver_groups",
                    "requester_may_approve",
                ]
            },
        ),
        (
            "Deadline",
            {"fields": [("deadline_minutes", "default_outcome", "low_risk"), "reminder_fractions"]},
        ),
        (
            "Escalation",
            {
                "fields": [
                    "escalate_after_minutes",
                    ("escalation_group", "escalation_chat_id"),
                    "widen_on_escalation",
                ]
            },
        ),
    ]

    @admin.display(description="Deadline")
    def deadline(self, policy):
        return f"{policy.deadline_minutes} min" if policy.deadline_minutes else "APPROVAL_EXPIRY"

    def save_model(self, request, obj, form, change):
        services.save_policy(
            obj,
            approver_groups=form.cleaned_data["approver_groups"],
            actor=admin_actor(request),
            changed=form.changed_data,
        )

    def save_related(self, request, form, formsets, change):
        """The groups were saved with the policy, in ``services.save_policy``."""

    def delete_model(self, request, obj):
        services.delete_policy(obj, actor=admin_actor(request))

    def delete_queryset(self, request, queryset):
        for policy in queryset:
            services.delete_policy(policy, actor=admin_actor(request))
