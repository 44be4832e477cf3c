import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from model_bakery import baker

from audit import paginators
from audit.admin import uuid_prefix
from audit.models import AuditEvent, Checkpoint
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
    # Its link in the hash chain: place, and both hashes cut short with the whole on hover.
    assert f'<div class="readonly">{event.seq}</div>' in content
    assert f'<code title="{event.hash}">{event.hash[:12]}…</code>' in content
    assert f'<code title="{event.prev_hash}">{event.prev_hash[:12]}…</code>' in content


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


def test_audit_rows_link_to_their_object_and_to_the_linked_user(admin_client, approver):
    approval = baker.make("claims.ApprovalRequest", expires_at=timezone.now())
    record(
        "approval.approved",
        actor=Actor(source=Source.TELEGRAM, user=approver, label="1001"),
        obj=approval,
    )

    page = admin_client.get(LIST_URL).content.decode()

    change_url = reverse("admin:claims_approvalrequest_change", args=[approval.pk])
    user_url = reverse("admin:auth_user_change", args=[approver.pk])
    assert f'<a href="{change_url}" title="{approval.pk}">{approval.short_id}…</a>' in page
    assert f'<a href="{user_url}">approver</a> via Telegram 1001' in page


def test_audit_search_finds_a_request_by_its_short_id(admin_client, approver):
    wanted, other = (
        baker.make("claims.ApprovalRequest", expires_at=timezone.now()) for _ in range(2)
    )
    for approval in (wanted, other):
        record("approval.requested", actor=Actor(source=Source.API, label="bot"), obj=approval)

    def found(term):
        response = admin_client.get(LIST_URL, {"q": term})
        return [event.object_id for event in response.context["cl"].result_list]

    assert found(wanted.short_id) == [str(wanted.pk)]
    assert found(wanted.pk.hex[:12]) == [str(wanted.pk)]
    assert found(str(wanted.pk)) == [str(wanted.pk)]


@pytest.mark.parametrize(
    ("term", "prefix"),
    [
        ("3F2A9C", "3f2a9c"),
        ("3f2a9c1b0000", "3f2a9c1b-0000"),
        ("3f2a9c1b-00", "3f2a9c1b-00"),
        ("3f2a9", None),
        ("deploy-bot", None),
    ],
)
def test_short_ids_become_the_start_of_a_stored_uuid(term, prefix):
    assert uuid_prefix(term) == prefix


def test_a_large_audit_list_is_sized_from_the_planner_estimate(
    admin_client, on_postgres, monkeypatch
):
    if not on_postgres:
        pytest.skip("the estimate is PostgreSQL's EXPLAIN")
    monkeypatch.setattr(paginators, "EXACT_BELOW", 3)
    for index in range(5):
        record("claim.acquired", actor=Actor(source=Source.API, label="bot"), object_id=index)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audit_auditevent")

    with CaptureQueriesContext(connection) as unfiltered:
        assert admin_client.get(LIST_URL).context["cl"].result_count == 5
    with CaptureQueriesContext(connection) as filtered:
        assert admin_client.get(LIST_URL, {"q": "3"}).context["cl"].result_count == 1

    def counted(captured):
        return any("COUNT(" in query["sql"] for query in captured)

    assert not counted(unfiltered) and counted(filtered)


def test_history_of_an_object_is_its_audit_trail(admin_client, approver):
    approval = baker.make("claims.ApprovalRequest", expires_at=timezone.now())
    record("approval.denied", actor=Actor(source=Source.ADMIN, user=approver), obj=approval)

    page = admin_client.get(reverse("admin:claims_approvalrequest_history", args=[approval.pk]))

    assert page.status_code == 200
    assert "approval.denied" in page.content.decode()
    missing = reverse("admin:claims_approvalrequest_history", args=[uuid.uuid4()])
    assert admin_client.get(missing).status_code == 404


def test_audit_filters_list_what_the_trail_holds(admin_client, event):
    record("claim.acquired", actor=Actor(source=Source.API, label="builder-7"), object_id="12")

    response = admin_client.get(LIST_URL)

    choices = {
        spec.title: [choice["display"] for choice in spec.choices(response.context["cl"])]
        for spec in response.context["cl"].filter_specs
    }
    assert choices["action"] == ["All", "approval.approved", "claim.acquired"]
    assert choices["user"] == ["All", "approver"]
    assert choices["object type"] == ["All", "(none)", "claims.approvalrequest"]
    assert admin_client.get(LIST_URL, {"when": "hour"}).context["cl"].result_count == 2


def test_a_user_filter_that_is_not_an_id_is_refused_not_a_crash(admin_client, event):
    response = admin_client.get(LIST_URL, {"actor__id__exact": "bob"})

    assert response.status_code == 302 and response.url.endswith("?e=1")


def test_checkpoints_list_read_only_at_a_constant_cost(admin_client):
    def checkpoints(count, start=0):
        for seq in range(start, start + count):
            baker.make(Checkpoint, seq=seq, hash=f"{seq:x}".ljust(64, "c"), signature="ab" * 32)

    url = reverse("admin:audit_checkpoint_changelist")
    checkpoints(2)
    with CaptureQueriesContext(connection) as few:
        listing = admin_client.get(url).content.decode()
    checkpoints(10, start=2)
    with CaptureQueriesContext(connection) as more:
        admin_client.get(url)

    assert len(more) == len(few)
    assert f'<code title="1{"c" * 63}">1{"c" * 11}…</code>' in listing
    first = Checkpoint.objects.get(seq=0)
    assert admin_client.get(reverse("admin:audit_checkpoint_add")).status_code == 403
    page = admin_client.get(reverse("admin:audit_checkpoint_change", args=[first.pk]))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
