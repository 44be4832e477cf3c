"""Writing the audit trail.

``record`` is called by other apps' services inside their own transaction, so an event exists
exactly when the change it describes was committed.
"""

from .models import AuditEvent


def record(action, *, actor, obj=None, object_type="", object_id="", details=None):
    """Append one audit event for ``action`` done by ``actor`` on ``obj``."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
    return AuditEvent.objects.create(
        actor=actor.authenticated_user,
        actor_label=actor.name,
        action=action,
        source=actor.source,
        object_type=object_type,
        object_id=str(object_id),
        trace_id=actor.trace_id,
        details=details or {},
    )
