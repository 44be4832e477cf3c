"""Telling the approver chat about approval requests, and keeping that message true.

These are subscribers of ``claims.events`` (registered in ``apps.py``): they run inside the
transaction of the change, so a message is queued exactly when the change it describes commits.
A new request is posted to ``TELEGRAM_APPROVER_CHAT_ID`` (nothing is posted while it is unset);
every later change to it, from any channel (admin, API, CLI, Telegram, a schedule), brings that one
message up to date in the chat it was posted to, whatever the settings of the process that made
the change.

One Telegram message per request: it is posted with Approve / Deny / Info buttons and then edited to
show the current state. The edit needs the Telegram id of the posted message, which only exists
once the outbox has sent it, so ``approval_changed`` looks at the outbox row of the original:

- sent: queue an ``editMessageText`` of that message;
- not sent yet (queued, failed, dead): rewrite the waiting message itself, so whoever sees it first
  sees the current state and no edit is needed;
- being sent right now: look again a little later (``tasks.refresh_approval_message``).

Under a policy with a quorum the message also shows the votes ("1 of 2 approvals, waiting for
…"), on its text and its buttons, and a vote that does not decide yet edits it too. A request
that runs a job (``automation``) shows the job: the approved hash, dry run or live, and once it
ended each step with ✓ or ✗, its return code and duration.
"""

from datetime import datetime, timedelta
from html import escape
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.text import Truncator
from django_q.models import Schedule
from django_q.tasks import schedule

from automation.events import JobEnded
from automation.models import Job, JobStep
from automation.selectors import job_for_approval
from claims import events
from claims.models import ApprovalRequest
from claims.policies import Rules
from claims.voting import Tally, tally

from . import outbox
from .models import OutboundMessage

Status = ApprovalRequest.Status

# Telegram counts at most 4096 characters per message; the request text gets the lion's share.
TEXT_LIMIT = 3000
# How long to wait before looking again at an original message that was being sent.
REFRESH_DELAY = timedelta(seconds=10)

JOB_MARKS: dict[str, str] = {
    Job.Status.SUCCEEDED: "✅",
    Job.Status.FAILED: "❌",
    Job.Status.CANCELLED: "🛑",
    Job.Status.REFUSED: "⛔",
    Job.Status.RUNNING: "⏳",
}
STEP_MARKS: dict[str, str] = {
    JobStep.Status.SUCCEEDED: "✓",
    JobStep.Status.FAILED: "✗",
    JobStep.Status.CANCELLED: "✗",
    JobStep.Status.INTERRUPTED: "↻",
    JobStep.Status.RUNNING: "…",
}

STATE_LINES: dict[str, str] = {
    Status.APPROVED: "✅ Approved",
    Status.DENIED: "❌ Denied",
    Status.POSTPONED: "⏸ Postponed",
    Status.EXPIRED: "⌛ Expired",
    Status.EXECUTED: "▶️ Executed",
    Status.ARCHIVED: "🗄 Archived",
}


def requested_key(approval: ApprovalRequest) -> str:
    """The outbox dedupe key of the message that announces ``approval``."""
    return f"approval:{approval.pk.hex}:requested"


def approval_requested(event: events.ApprovalRequested) -> None:
    """Queue the message asking the approver chat to decide the new request."""
    chat_id = settings.TELEGRAM_APPROVER_CHAT_ID
    if not chat_id:
        return
    outbox.enqueue(
        method="sendMessage",
        chat_id=chat_id,
        payload=render(event.approval),
        dedupe_key=requested_key(event.approval),
    )


def approval_changed(event: events.ApprovalEvent) -> None:
    """Make the approver chat's message about the request show its new state."""
    show_current_state(event.approval)


def job_ended(event: JobEnded) -> None:
    """Show a job's outcome on its request's message, unless the request's own edit (it just
    became executed) shows it already; a re-run ends again, with an edit of its own."""
    if event.request_executed:
        return
    job = event.job
    show_current_state(job.approval, occasion=f"job-{job.runs}-{job.status}")


def show_current_state(approval: ApprovalRequest, *, occasion: str = "") -> None:
    """Bring the message about ``approval`` in line with it (see the module docstring);
    ``occasion`` tells apart edits of a request that stays in one state."""
    original = outbox.find(requested_key(approval), lock=True)
    if original is None:
        return
    if original.status == OutboundMessage.Status.SENT:
        if original.telegram_message_id is None:
            return
        stamp = int(approval.updated_at.timestamp() * 1_000_000)
        outbox.enqueue(
            method="editMessageText",
            chat_id=original.chat_id,
            payload={"message_id": original.telegram_message_id, **render(approval)},
            # One edit per state the request reaches; a request may come back to a state
            # (postponed, reopened, postponed again), so the key carries when it got there.
            dedupe_key=f"approval:{approval.pk.hex}:{approval.status}:{stamp}{occasion}",
        )
    elif original.status == OutboundMessage.Status.SENDING:
        schedule(
            "telegram_bridge.tasks.refresh_approval_message",
            str(approval.pk),
            schedule_type=Schedule.ONCE,
            next_run=timezone.now() + REFRESH_DELAY,
        )
    else:
        outbox.rewrite(original, render(approval))


def refresh_approval_message(approval_id: str) -> None:
    """Look again at a message that was being sent when its request changed."""
    with transaction.atomic():
        approval = ApprovalRequest.objects.filter(pk=approval_id).first()
        if approval is not None:
            show_current_state(approval)


def render(
    approval: ApprovalRequest, *, lead: str = "", counted: Tally | None = None
) -> dict[str, Any]:
    """The text (HTML) and the buttons of the message about ``approval`` in its current state.

    ``lead`` is a first line (a reminder, an escalation); ``counted`` the votes, when the caller
    has counted them already.
    """
    # Who is still to vote is only shown under a quorum; a single vote decides otherwise.
    counted = counted or tally(approval, waiting=Rules.from_request(approval).quorum > 1)
    lines = [lead, ""] if lead else []
    lines += [
        f"<b>Approval request</b> · {escape(approval.get_kind_display())}",
        "",
        escape(Truncator(approval.text).chars(TEXT_LIMIT), quote=False),
        "",
        f"Requested by {escape(approval.requester, quote=False)}",
        f"Id <code>{approval.short_id}</code> · expires {when(approval.expires_at)}",
    ]
    if approval.claim is not None:
        lines.append(f"Claim: {escape(approval.claim.work_item, quote=False)}")
    awaiting = approval.status in ApprovalRequest.AWAITING_DECISION
    if awaiting and counted.quorum > 1:
        lines.append(f"Votes: {escape(counted.summary(), quote=False)}")
    state = state_line(approval)
    if state:
        lines += ["", state]
    lines += job_lines(approval)
    message: dict[str, Any] = {"text": "\n".join(lines), "parse_mode": "HTML"}
    if awaiting:
        message["reply_markup"] = keyboard(approval, counted)
    return message


def state_line(approval: ApprovalRequest) -> str:
    """``✅ Approved by alice (telegram) at …`` for a request that is no longer plainly pending."""
    line = STATE_LINES.get(approval.status)
    if line is None:
        return ""
    if approval.status == Status.EXPIRED:
        return f"{line} at {when(approval.expires_at)}"
    if approval.status == Status.EXECUTED:
        return f"{line} at {when(approval.executed_at)}"
    if approval.status == Status.ARCHIVED:
        return f"{line} at {when(approval.archived_at)}"
    if approval.decision_source == ApprovalRequest.DecisionSource.DEFAULT:
        return f"{line} by default: nobody decided by {when(approval.decided_at)}"
    if approval.decided_by is not None:
        who = escape(approval.decided_by.get_username(), quote=False)
        source = f" ({approval.decision_source})" if approval.decision_source else ""
        line = f"{line} by {who}{source} at {when(approval.decided_at)}"
    return line


def job_lines(approval: ApprovalRequest) -> list[str]:
    """For a request that runs a job: the hash approved, dry run or live, and the job's state;
    once it ran, each step with ✓ or ✗, its return code and duration."""
    job = job_for_approval(approval)
    if job is None:
        return []
    mode = "dry run" if job.dry_run else "live"
    lines = ["", f"Job <code>{job.short_id}</code> · sha256 <code>{job.short_hash}</code> · {mode}"]
    state = f"{JOB_MARKS.get(job.status, '')} Job {job.get_status_display().lower()}".strip()
    if job.reason:
        state += f": {escape(Truncator(job.reason).chars(200), quote=False)}"
    lines.append(state)
    if job.status != Job.Status.AWAITING_APPROVAL:
        lines += [step_line(step) for step in job.steps.all()]
    return lines


def step_line(step: JobStep) -> str:
    mark = STEP_MARKS.get(step.status, "·")
    line = f"{mark} {escape(step.step_id, quote=False)}"
    if step.returncode is not None:
        line += f" (exit {step.returncode}"
        line += f", {step.duration_ms / 1000:.1f} s)" if step.duration_ms is not None else ")"
    return line


def keyboard(approval: ApprovalRequest, counted: Tally) -> dict[str, Any]:
    """Approve / Deny / Info; under a quorum the buttons show how many voted each way."""
    hex_id = approval.pk.hex
    approve, deny = "✅ Approve", "❌ Deny"
    if counted.quorum > 1:
        approve += f" {counted.approvals}/{counted.quorum}"
        if counted.deny_needs_quorum:
            deny += f" {counted.denials}/{counted.quorum}"
    return {
        "inline_keyboard": [
            [
                {"text": approve, "callback_data": f"approve:{hex_id}"},
                {"text": deny, "callback_data": f"deny:{hex_id}"},
                {"text": "🔍 Info", "callback_data": f"info:{hex_id}"},
            ]
        ]
    }


def when(moment: datetime | None) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M} {settings.TIME_ZONE}" if moment else "—"
