"""Dead letters in the admin: the default list, one-click and bulk requeue, permissions."""

import uuid

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from model_bakery import baker

from audit.models import AuditEvent
from telegram_bridge.models import OutboundMessage

from .outbound import outbound_message

Status = OutboundMessage.Status
CHANGELIST = reverse("admin:telegram_bridge_outboundmessage_changelist")


def requeue_url(pk):
    return reverse("admin:telegram_bridge_outboundmessage_requeue", args=[pk])


@pytest.fixture
def staff(client):
    """A staff user who may view outbound messages but not requeue them."""
    user = baker.make("auth.User", username="viewer", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_outboundmessage"))
    client.force_login(user)
    return user


@pytest.fixture
def operator(client):
    user = baker.make("auth.User", username="operator", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_outboundmessage", "requeue_outboundmessage"])
    )
    client.force_login(user)
    return user


@pytest.mark.django_db
def test_list_opens_on_failed_and_dead_messages(client, operator):
    dead, failed = outbound_message(Status.DEAD), outbound_message(Status.FAILED)
    sent = outbound_message(Status.SENT)

    response = client.get(CHANGELIST)

    shown = {row.pk for row in response.context["cl"].result_list}
    assert shown == {dead.pk, failed.pk}
    assert "Internal Server Error" in response.text
    assert " ago" in response.text
    assert requeue_url(dead.pk) in response.text
    assert requeue_url(sent.pk) not in response.text

    everything = client.get(CHANGELIST, {"delivery": "all"})
    assert len(everything.context["cl"].result_list) == 3


@pytest.mark.django_db
def test_messages_cannot_be_edited_by_hand(client, operator):
    dead = outbound_message(Status.DEAD)

    page = client.get(reverse("admin:telegram_bridge_outboundmessage_change", args=[dead.pk]))
    posted = client.post(
        reverse("admin:telegram_bridge_outboundmessage_change", args=[dead.pk]),
        {"status": Status.SENT},
    )

    assert page.status_code == 200
    assert 'name="status"' not in page.text
    assert posted.status_code == 403
    assert OutboundMessage.objects.get(pk=dead.pk).status == Status.DEAD


@pytest.mark.django_db
def test_requeue_button_asks_for_confirmation_first(client, operator):
    dead = outbound_message(Status.DEAD)

    response = client.get(requeue_url(dead.pk))

    assert response.status_code == 200
    assert "Yes, requeue" in response.text
    assert "csrfmiddlewaretoken" in response.text
    assert OutboundMessage.objects.get(pk=dead.pk).status == Status.DEAD


@pytest.mark.django_db
def test_confirmed_requeue_button_requeues_and_audits(client, operator):
    dead = outbound_message(Status.DEAD)

    response = client.post(requeue_url(dead.pk), follow=True)

    dead.refresh_from_db()
    event = AuditEvent.objects.get(action="telegram.requeued")
    assert (dead.status, dead.attempts, dead.requeues) == (Status.QUEUED, 0, 1)
    assert (event.actor, event.source, event.object_id) == (operator, "admin", str(dead.pk))
    assert "1 requeued" in response.text


@pytest.mark.django_db
def test_requeue_button_posts_need_the_csrf_token(operator):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(operator)
    dead = outbound_message(Status.DEAD)

    response = strict.post(requeue_url(dead.pk))

    assert response.status_code == 403
    assert OutboundMessage.objects.get(pk=dead.pk).status == Status.DEAD


@pytest.mark.django_db
def test_requeue_needs_the_permission(client, staff):
    dead = outbound_message(Status.DEAD)

    listing = client.get(CHANGELIST)
    page = client.get(requeue_url(dead.pk))
    posted = client.post(requeue_url(dead.pk))

    assert requeue_url(dead.pk) not in listing.text
    assert "requeue_selected" not in listing.text
    assert (page.status_code, posted.status_code) == (403, 403)
    assert OutboundMessage.objects.get(pk=dead.pk).status == Status.DEAD


@pytest.mark.django_db
def test_bulk_requeue_confirms_then_reports_requeued_and_skipped(client, operator):
    dead = [outbound_message(Status.DEAD) for _ in range(3)]
    sent = outbound_message(Status.SENT)
    selected = [m.pk for m in [*dead, sent]]

    confirmation = client.post(
        f"{CHANGELIST}?delivery=all",
        {"action": "requeue_selected", "_selected_action": selected},
    )
    assert "Yes, requeue" in confirmation.text
    assert OutboundMessage.objects.filter(status=Status.QUEUED).count() == 0

    done = client.post(
        f"{CHANGELIST}?delivery=all",
        {"action": "requeue_selected", "_selected_action": selected, "post": "yes"},
        follow=True,
    )

    assert OutboundMessage.objects.filter(status=Status.QUEUED).count() == 3
    assert AuditEvent.objects.filter(action="telegram.requeued").count() == 3
    assert f"3 requeued; 1 skipped: #{sent.pk} is sent" in done.text


@pytest.mark.django_db
def test_inbound_updates_and_account_links_are_listed(client, admin_user):
    client.force_login(admin_user)
    baker.make("telegram_bridge.InboundUpdate", update_id=77, payload={}, status="failed")
    baker.make("telegram_bridge.TelegramAccount", telegram_user_id=5, user=admin_user)

    updates = client.get(reverse("admin:telegram_bridge_inboundupdate_changelist"))
    accounts = client.get(reverse("admin:telegram_bridge_telegramaccount_changelist"))
    add_update = client.get(reverse("admin:telegram_bridge_inboundupdate_add"))

    assert updates.status_code == accounts.status_code == 200
    assert "77" in updates.text
    assert add_update.status_code == 403


@pytest.mark.django_db
def test_messages_about_a_request_link_to_it(client, operator):
    approval_id = uuid.uuid4()
    outbound_message(Status.DEAD, dedupe_key=f"approval:{approval_id.hex}:requested")

    page = client.get(CHANGELIST).text

    url = reverse("admin:claims_approvalrequest_change", args=[approval_id])
    assert f'<a href="{url}">{approval_id.hex[:8]}</a>' in page
    assert '<span class="status status-dead">Dead</span>' in page
