from django.conf import settings
from django.db import models
from django.utils import timezone

from backoffice.actors import Source


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("Audit events are append-only.")

    def delete(self):
        raise TypeError("Audit events are append-only.")


class AuditEvent(models.Model):
    """One thing that happened, written in the same transaction as the change it records.

    Rows are append-only: the model refuses to update or delete them, the admin is read-only and on
    PostgreSQL a trigger refuses UPDATE, DELETE and TRUNCATE from anyone. Each row is a link of a
    hash chain (``audit/chain.py``): ``seq`` numbers the links without gaps, and ``hash`` covers
    ``prev_hash`` and the row's own fields, so a change behind the database's back is found by
    ``manage.py audit_verify``.

    ``actor`` keeps the id of a user even after the user is deleted (no database constraint, no
    cascade): deleting a user must never rewrite an audit row, and the id is part of the hash.
    """

    seq = models.BigIntegerField(unique=True, editable=False, help_text="Place in the hash chain.")
    # Set by audit.services.record() before the hash is computed, never by the database.
    timestamp = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="audit_events",
    )
    actor_label = models.CharField(
        max_length=200, blank=True, help_text="Agent id, Telegram user or username at the time."
    )
    action = models.CharField(max_length=64, db_index=True, help_text="Dotted, e.g. claim.acquired")
    source = models.CharField(max_length=16, choices=Source.choices, db_index=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True, db_index=True)
    trace_id = models.CharField(max_length=64, blank=True, db_index=True)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, editable=False)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-timestamp", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self):
        return (
            f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.action} {self.object_type}:{self.object_id}"
        )

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise TypeError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("Audit events are append-only.")


class ChainHead(models.Model):
    """The one row that says where the chain ends: the last event's ``seq`` and ``hash``.

    Writers take the next ``seq`` by updating this row, which locks it until their transaction
    ends, so concurrent writers append one after another and make a single chain. The event's
    insert brings ``hash`` up to date (a database trigger), within the same transaction.
    """

    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(id=1), name="audit_one_chain_head")
        ]

    def __str__(self) -> str:
        return f"chain head at {self.seq}"


class Checkpoint(models.Model):
    """A signed statement of the chain head, published outside the database (the audit channel
    on Telegram and ``AUDIT_CHECKPOINT_FILE``): evidence that everything up to ``seq`` existed at
    ``timestamp``. Kept here too, so the schedule knows what it published last."""

    seq = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    timestamp = models.DateTimeField(default=timezone.now, db_index=True)
    signature = models.CharField(max_length=64)

    class Meta:
        ordering = ["-seq", "-id"]

    def __str__(self) -> str:
        return f"checkpoint at {self.seq} ({self.timestamp:%Y-%m-%d %H:%M:%S})"
