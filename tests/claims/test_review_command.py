"""``manage.py approvals review``: a developer at a terminal goes through the pending requests."""

import io
import os
import subprocess
import sys

import pytest
from django.core.management import call_command

from audit.models import AuditEvent
from claims.models import ApprovalRequest

from .test_commands import PROJECT_DIR, database_url


class Terminal(io.StringIO):
    """What the developer types, on a stream that says it is a terminal."""

    def isatty(self):
        return True


@pytest.fixture
def at_a_terminal(monkeypatch):
    """Run the command as if at a terminal typing ``lines``; returns what it printed."""

    def type_in(*lines):
        monkeypatch.setattr(sys, "stdin", Terminal("".join(f"{line}\n" for line in lines)))
        monkeypatch.setattr(sys, "stdout", Terminal())
        out = Terminal()
        call_command("approvals", "review", "--user", "approver", stdout=out)
        return out.getvalue()

    return type_in


def test_each_pending_request_is_shown_and_decided_through_the_service(
    at_a_terminal, approver, make_approval
):
    first = make_approval(text="Restart worker-03", payload={"host": "worker-03"})
    second = make_approval(text="Drop the staging database", requested_by="cleanup-bot")
    third = make_approval(text="Rotate the TLS certificate")

    output = at_a_terminal("a", "looks fine", "x", "deny", "", "s")

    for approval in (first, second, third):
        approval.refresh_from_db()
    assert (first.status, first.decision_note) == (ApprovalRequest.Status.APPROVED, "looks fine")
    assert first.decided_by == approver and first.decision_source == "cli"
    assert second.status == ApprovalRequest.Status.DENIED
    assert third.status == ApprovalRequest.Status.PENDING
    assert AuditEvent.objects.filter(action="approval.approved", object_id=str(first.pk)).exists()
    assert '"host": "worker-03"' in output
    assert "Requester: cleanup-bot" in output
    assert "Deadline:" in output


def test_the_end_of_input_stops_the_review_and_decides_nothing(
    at_a_terminal, approver, make_approval
):
    approval = make_approval()

    at_a_terminal()

    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.Status.PENDING


@pytest.mark.django_db(transaction=True)
def test_without_a_terminal_it_refuses_with_exit_2_instead_of_waiting(approver):
    result = subprocess.run(
        [sys.executable, "manage.py", "approvals", "review", "--user", "approver"],
        cwd=PROJECT_DIR,
        env={**os.environ, "DATABASE_URL": database_url()},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 2
    assert "needs a terminal" in result.stderr
