"""The on-call admin in a real browser: the dashboard at 1366 px and at phone width, a decision
taken from it and found again in the audit trail, a dead letter requeued to the fake Bot API."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.utils import timezone
from model_bakery import baker

from automation.models import Job
from backoffice.actors import Actor, Source
from claims import services
from claims.models import ApprovalRequest
from monitoring import heartbeat
from telegram_bridge.models import OutboundMessage
from tests.claims.leases import live_lease
from tests.telegram.outbound import outbound_message
from tests.telegram.worker import wait_for

from .conftest import ADMIN_PASSWORD, log_in

SCREENSHOTS = settings.BASE_DIR / ".tmp" / "screenshots"
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
LONG_TEXT = (
    "Run database migrations 0042 to 0047 on production, then restart every queue worker and "
    "check that the outbox drains before the release window closes at 18:00"
)


def screenshot(page, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def ask(text):
    user, _ = User.objects.get_or_create(username="ci")
    agent = Actor(source=Source.API, user=user, label="deploy-bot")
    return services.request_approval(kind="command", text=text, agent_id="deploy-bot", actor=agent)


def give_the_dashboard_something_to_show():
    """A lease about to end, a dead letter, a failed update, a failed job, a worker's beat and a
    week of deliveries."""
    now = timezone.now()
    heartbeat.beat(now - timedelta(seconds=20))
    baker.make(
        Job,
        name="nightly-backup",
        manifest={},
        status=Job.Status.FAILED,
        finished_at=now,
        approval__status=ApprovalRequest.Status.APPROVED,
        reason="step dump exited 2: pg_dump: error: connection to server was lost " * 2,
    )
    live_lease("checkout", "payment-form", ends_in=timedelta(minutes=3))
    baker.make(
        "telegram_bridge.InboundUpdate",
        update_id=90210,
        payload={},
        status="failed",
        error="ValueError: callback_data 'approve:zzz' names no request",
    )
    for hours in range(0, 24 * 7, 5):
        for index, status in enumerate(["sent", "sent", "sent", "dead" if hours % 3 else "sent"]):
            message = outbound_message(
                status, dedupe_key=f"history:{hours}:{index}", attempts=1 + (hours + index) % 3
            )
            OutboundMessage.objects.filter(pk=message.pk).update(
                created_at=now - timedelta(hours=hours)
            )


def fits(page, width):
    """Nothing sticks out sideways: no column is cut off, no sideways scrolling of the page or
    of a list's table."""
    table_fits = page.evaluate(
        "[...document.querySelectorAll('#changelist .results')]"
        ".every(box => box.scrollWidth <= box.clientWidth)"
    )
    return table_fits and page.evaluate("document.documentElement.scrollWidth") <= width


def test_approve_from_the_dashboard_and_find_it_by_short_id(
    browser_page, live_server, staff_approver
):
    approval = ask(LONG_TEXT)
    ask("Restart the queue workers on worker-03")
    give_the_dashboard_something_to_show()
    staff_approver.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    browser_page.set_viewport_size(DESKTOP)
    log_in(browser_page, live_server, staff_approver)

    row = browser_page.locator("#panel-pending tr", has_text=approval.short_id)
    assert row.locator("td.cut").get_attribute("title") == LONG_TEXT
    assert browser_page.locator("#panel-jobs", has_text="nightly-backup").is_visible()
    assert browser_page.locator("#panel-heartbeat .status-alive").is_visible()
    assert fits(browser_page, DESKTOP["width"])
    screenshot(browser_page, "dashboard-1366")
    row.locator("button.approve").click()
    browser_page.wait_for_selector("ul.messagelist")

    assert "1 approved" in browser_page.inner_text("ul.messagelist")
    assert browser_page.url == f"{live_server.url}/admin/"
    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.Status.APPROVED

    browser_page.goto(f"{live_server.url}/admin/audit/auditevent/")
    browser_page.fill("#searchbar", approval.short_id)
    browser_page.press("#searchbar", "Enter")
    browser_page.wait_for_selector("#result_list")
    found = browser_page.locator("#result_list tbody tr", has_text="approval.approved")
    assert found.count() == 1
    found.locator(f"a[title='{approval.pk}']").click()
    browser_page.wait_for_selector("#approvalrequest_form")
    assert approval.short_id in browser_page.title()


def test_deny_asks_first_and_the_request_page_works_at_phone_width(
    browser_page, live_server, staff_approver
):
    approval = ask(LONG_TEXT)
    log_in(browser_page, live_server, staff_approver)
    browser_page.set_viewport_size(PHONE)
    browser_page.goto(f"{live_server.url}/admin/claims/approvalrequest/{approval.pk}/change/")

    for name in ("approve", "deny"):
        box = browser_page.locator(f"button[value={name}]").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        assert box["height"] >= 40
    screenshot(browser_page, "request-phone")

    browser_page.once("dialog", lambda dialog: dialog.dismiss())
    browser_page.click("button[value=deny]")
    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.Status.PENDING

    browser_page.once("dialog", lambda dialog: dialog.accept())
    browser_page.click("button[value=deny]")
    browser_page.wait_for_selector("ul.messagelist")
    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.Status.DENIED

    browser_page.goto(f"{live_server.url}/admin/")
    assert fits(browser_page, PHONE["width"])
    screenshot(browser_page, "dashboard-phone")


@pytest.mark.parametrize(
    "path",
    [
        "/admin/claims/approvalrequest/?status__exact=all",
        "/admin/audit/auditevent/",
        "/admin/telegram_bridge/outboundmessage/",
    ],
)
def test_lists_fit_1366_pixels(browser_page, live_server, admin_user, path):
    approval = ask(LONG_TEXT)
    services.decide(approval.pk, "approve", actor=Actor(source=Source.CLI, user=admin_user))
    outbound_message(
        OutboundMessage.Status.DEAD,
        dedupe_key=f"approval:{approval.pk.hex}:requested",
        last_error="PermanentError: Bad Request: chat not found " * 4,
    )
    browser_page.set_viewport_size(DESKTOP)
    log_in(browser_page, live_server, admin_user, password=ADMIN_PASSWORD, next_path=path)
    browser_page.wait_for_selector("#result_list")

    assert fits(browser_page, DESKTOP["width"])
    screenshot(browser_page, path.strip("/").replace("/", "-").split("?")[0])


@pytest.mark.django_db(transaction=True)
def test_requeue_a_dead_letter_from_the_dashboard(
    browser_page,
    live_server,
    admin_user,
    fake_telegram,
    qcluster,
):
    dead = outbound_message(
        OutboundMessage.Status.DEAD,
        chat_id=-1001,
        payload={"chat_id": -1001, "text": "Requeued from the dashboard"},
        dedupe_key="dashboard-requeue",
        failed_at=timezone.now(),
    )
    qcluster.start()
    log_in(browser_page, live_server, admin_user, password=ADMIN_PASSWORD)

    browser_page.locator("#panel-dead_letters button.requeue").click()
    browser_page.wait_for_selector("ul.messagelist")

    assert "1 requeued" in browser_page.inner_text("ul.messagelist")
    sent = wait_for(
        lambda: fake_telegram.control.sent(chat_id=-1001),
        timeout=60,
        message="the requeued message at the fake Bot API",
    )
    assert sent[0]["payload"]["text"] == "Requeued from the dashboard"
    wait_for(
        OutboundMessage.objects.filter(pk=dead.pk, status=OutboundMessage.Status.SENT).exists,
        message="the message marked sent",
    )
