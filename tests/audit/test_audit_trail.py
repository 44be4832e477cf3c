import pytest
from django.db import connection, transaction
from model_bakery import baker

from audit.models import AuditEvent
from audit.selectors import events_for
from audit.services import record
from backoffice.actors import Actor, Source
from claims import services
from claims.models import Claim

pytestmark = pytest.mark.django_db


class Abort(Exception):
    pass


def test_rolled_back_change_leaves_no_event():
    with pytest.raises(Abort), transaction.atomic():
        services.claim(
            story="checkout",
            todolist="payment-form",
            agent_id="builder-7",
            fingerprint="fp",
            actor=Actor(source=Source.API, user=baker.make("auth.User"), label="builder-7"),
        )
        assert AuditEvent.objects.count() == 1
        raise Abort

    assert not Claim.objects.exists()
    assert not AuditEvent.objects.exists()


def test_event_names_actor_channel_and_trace(approver):
    actor = Actor(source=Source.CLI, user=approver, trace_id="trace-42")

    event = record("claim.inspected", actor=actor, object_type="claims.claim", object_id=7)

    assert (event.actor, event.actor_label, event.source) == (approver, "approver", "cli")
    assert (event.object_id, event.trace_id) == ("7", "trace-42")
    assert event.timestamp is not None


def test_saving_an_existing_event_again_is_refused():
    event = record("claim.acquired", actor=Actor(source=Source.SYSTEM), object_id="1")
    event.action = "claim.released"

    with pytest.raises(TypeError, match="append-only"):
        event.save()

    assert AuditEvent.objects.get().action == "claim.acquired"


def test_events_cannot_be_updated_or_deleted_in_bulk_or_one_by_one():
    event = record("claim.acquired", actor=Actor(source=Source.SYSTEM), object_id="1")

    with pytest.raises(TypeError):
        AuditEvent.objects.filter(pk=event.pk).update(action="claim.released")
    with pytest.raises(TypeError):
        AuditEvent.objects.all().delete()
    with pytest.raises(TypeError):
        event.delete()

    assert AuditEvent.objects.filter(action="claim.acquired").count() == 1


def test_events_for_lists_one_objects_events_oldest_first():
    actor = Actor(source=Source.API, user=baker.make("auth.User"), label="builder-7")
    granted = services.claim(
        story="s", todolist="t", agent_id="builder-7", fingerprint="fp", actor=actor
    )
    services.release(granted.claim.pk, lease_token=granted.lease_token, actor=actor)
    record("claim.acquired", actor=actor, object_type="claims.claim", object_id="999")

    actions = [e.action for e in events_for(granted.claim)]

    assert actions == ["claim.acquired", "claim.released"]


def test_timestamp_column_exists_from_migrations():
    with connection.cursor() as cursor:
        columns = {
            column.name
            for column in connection.introspection.get_table_description(
                cursor, AuditEvent._meta.db_table
            )
        }

    assert {"timestamp", "action", "source", "object_id", "trace_id", "details"} <= columns
