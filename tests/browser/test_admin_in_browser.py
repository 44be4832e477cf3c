from model_bakery import baker

from audit.models import AuditEvent
from backoffice.actors import Actor, Source
from claims import services
from claims.models import ApprovalRequest

from .conftest import log_in


def test_staff_approves_a_request_with_the_button_on_its_page(
    browser_page, live_server, staff_approver, tmp_path
):
    approval = services.request_approval(
        kind="command",
        text="Run database migrations on staging",
        agent_id="deploy-bot",
        actor=Actor(source=Source.API, user=baker.make("auth.User"), label="deploy-bot"),
    )
    log_in(browser_page, live_server, staff_approver)

    browser_page.goto(f"{live_server.url}/admin/claims/approvalrequest/{approval.pk}/change/")
    browser_page.fill("#id_step_note", "Checked the migration plan")
    browser_page.click("button[name=step][value=approve]")
    browser_page.wait_for_selector("ul.messagelist")
    browser_page.screenshot(path=str(tmp_path / "approved.png"), full_page=True)

    assert "1 approved" in browser_page.inner_text("ul.messagelist")
    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.Status.APPROVED
    assert approval.decided_by == staff_approver
    event = AuditEvent.objects.get(action="approval.approved", object_id=str(approval.pk))
    assert (event.actor, event.source) == (staff_approver, Source.ADMIN)
    assert event.details["decision_note"] == "Checked the migration plan"
    # Once approved, the page offers no second Approve button.
    assert browser_page.locator("button[name=step][value=approve]").count() == 0


def test_bulk_deny_from_the_list_reports_what_was_skipped(
    browser_page, live_server, staff_approver
):
    agent = Actor(source=Source.API, user=baker.make("auth.User"), label="deploy-bot")
    pending = services.request_approval(
        kind="manifest", text="Release 2.4.0", agent_id="deploy-bot", actor=agent
    )
    approved = services.request_approval(
        kind="manifest", text="Release 2.3.9", agent_id="deploy-bot", actor=agent
    )
    services.decide(approved.pk, "approve", actor=Actor(source=Source.CLI, user=staff_approver))
    log_in(browser_page, live_server, staff_approver)

    browser_page.goto(f"{live_server.url}/admin/claims/approvalrequest/?status__exact=all")
    browser_page.check("#action-toggle")
    browser_page.select_option("select[name=action]", "deny")
    browser_page.click("button[name=index]")
    browser_page.fill("#id_bulk_note", "Release freeze")
    browser_page.click("input[type=submit].deny")
    browser_page.wait_for_selector("ul.messagelist")

    message = browser_page.inner_text("ul.messagelist")
    assert "1 denied; 1 skipped" in message
    assert approved.short_id in message
    pending.refresh_from_db()
    assert pending.status == ApprovalRequest.Status.DENIED
