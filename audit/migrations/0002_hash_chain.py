"""The audit trail becomes a tamper-evident hash chain.

Existing events are chained in the order they were written (their id), with the key of the
process that migrates; then the chain head is set, and triggers make the table append-only on
PostgreSQL and keep the head's hash up to date on every database.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

from audit import chain
from backoffice.timestamps import iso_utc

APPEND_ONLY_POSTGRES = """
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only: % refused on %', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_append_only
    BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_no_truncate
    BEFORE TRUNCATE ON audit_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE FUNCTION audit_advance_head() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE audit_chainhead SET hash = NEW.hash WHERE id = 1;
    RETURN NULL;
END;
$$;
CREATE TRIGGER audit_advance_head
    AFTER INSERT ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_advance_head();
"""
DROP_POSTGRES = """
DROP TRIGGER IF EXISTS audit_advance_head ON audit_auditevent;
DROP TRIGGER IF EXISTS audit_no_truncate ON audit_auditevent;
DROP TRIGGER IF EXISTS audit_append_only ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_advance_head();
DROP FUNCTION IF EXISTS audit_refuse_change();
"""
ADVANCE_HEAD_SQLITE = """
CREATE TRIGGER audit_advance_head AFTER INSERT ON audit_auditevent
BEGIN
    UPDATE audit_chainhead SET hash = NEW.hash WHERE id = 1;
END;
"""
DROP_SQLITE = "DROP TRIGGER IF EXISTS audit_advance_head;"


def chain_existing_events(apps, schema_editor):
    AuditEvent = apps.get_model("audit", "AuditEvent")
    ChainHead = apps.get_model("audit", "ChainHead")
    key = settings.AUDIT_HMAC_KEY.encode()
    prev_hash, seq = chain.GENESIS, 0
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        seq += 1
        values = {
            "seq": seq,
            "timestamp": iso_utc(event.timestamp),
            "actor_id": event.actor_id,
            "actor_label": event.actor_label,
            "action": event.action,
            "source": event.source,
            "object_type": event.object_type,
            "object_id": event.object_id,
            "trace_id": event.trace_id,
            "details": event.details,
        }
        digest = chain.link_hash(key, prev_hash, values)
        AuditEvent.objects.filter(pk=event.pk).update(seq=seq, prev_hash=prev_hash, hash=digest)
        prev_hash = digest
    ChainHead.objects.create(id=1, seq=seq, hash=prev_hash)


def install_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(APPEND_ONLY_POSTGRES, params=None)
    elif vendor == "sqlite":
        schema_editor.execute(ADVANCE_HEAD_SQLITE, params=None)


def drop_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(DROP_POSTGRES, params=None)
    elif vendor == "sqlite":
        schema_editor.execute(DROP_SQLITE, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="actor",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="audit_events",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="timestamp",
            field=models.DateTimeField(db_index=True, default=django.utils.timezone.now),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="seq",
            field=models.BigIntegerField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="prev_hash",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="hash",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.CreateModel(
            name="ChainHead",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("seq", models.BigIntegerField(default=0)),
                ("hash", models.CharField(max_length=64)),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(condition=models.Q(id=1), name="audit_one_chain_head")
                ],
            },
        ),
        migrations.CreateModel(
            name="Checkpoint",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("seq", models.BigIntegerField()),
                ("hash", models.CharField(max_length=64)),
                (
                    "timestamp",
                    models.DateTimeField(db_index=True, default=django.utils.timezone.now),
                ),
                ("signature", models.CharField(max_length=64)),
            ],
            options={"ordering": ["-seq", "-id"]},
        ),
        migrations.RunPython(chain_existing_events, migrations.RunPython.noop, elidable=False),
        migrations.AlterField(
            model_name="auditevent",
            name="seq",
            field=models.BigIntegerField(
                editable=False, help_text="Place in the hash chain.", unique=True
            ),
        ),
        migrations.RunPython(install_triggers, drop_triggers, elidable=False),
    ]
