import pytest
from django.urls import reverse

from audit.models import AuditEvent
from audit.services import record
from backoffice.actors import Actor, Source

pytestmark = pytest.mark.django_db

LIST_URL = reverse("admin:audit_auditevent_changelist")


@pytest.fixture
def event(approver):
    return record(
        "approval.approved",
        actor=Actor(source=Source.ADMIN, user=approver, trace_id="trace-abc"),
        object_type="claims.approvalrequest",
        object_id="3f2a9c1b-0000-0000-0000-000000000000",
        details={"note": "Go ahead", "previous_status": "pending"},
    )


def test_audit_list_filters_and_searches(admin_client, event):
    record("claim.acquired", actor=Actor(source=Source.API, label="builder-7"), object_id="12")

    def found(**query):
        return admin_client.get(LIST_URL, query).context["cl"].result_count

    assert admin_client.get(LIST_URL).status_code == 200
    assert found() == 2
    assert found(action="approval.approved") == 1
    assert found(source__exact="api") == 1
    assert found(actor__id__exact=event.actor_id) == 1
    assert found(q="trace-abc") == 1
    assert found(q="12") == 1
    assert found(timestamp__year=event.timestamp.year) == 2


def test_audit_event_page_shows_details_as_pretty_json(admin_client, event):
    page = admin_client.get(reverse("admin:audit_auditevent_change", args=[event.pk]))

    assert page.status_code == 200
    content = page.content.decode()
    assert "<pre>{\n  &quot;note&quot;: &quot;Go ahead&quot;," in content
    assert 'name="_save"' not in content


def test_audit_admin_refuses_add_change_and_delete(admin_client, event):
    assert admin_client.get(reverse("admin:audit_auditevent_add")).status_code == 403
    assert (
        admin_client.get(reverse("admin:audit_auditevent_delete", args=[event.pk])).status_code
        == 403
    )
    admin_client.post(
        reverse("admin:audit_auditevent_change", args=[event.pk]), {"action": "tampered"}
    )
    assert admin_client.get(LIST_URL).context["action_form"] is None
    bulk = admin_client.post(
        LIST_URL, {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"}
    )
    assert bulk.status_code in (200, 302)
    assert AuditEvent.objects.get().action == "approval.approved"


def test_events_of_a_deleted_user_still_list_and_open(admin_client, event, approver):
    approver.delete()

    listing = admin_client.get(LIST_URL)
    page = admin_client.get(reverse("admin:audit_auditevent_change", args=[event.pk]))

    assert listing.status_code == 200 and b"approver" in listing.content
    assert page.status_code == 200 and b"approver" in page.content
