"""Reading the audit trail."""

from .models import AuditEvent


def events_for(obj):
    """Events about one object, oldest first."""
    return AuditEvent.objects.filter(
        object_type=obj._meta.label_lower, object_id=str(obj.pk)
    ).order_by("timestamp", "id")
