"""Template filters that show an audit event as the audit admin does (``audit.presentation``)."""

from django import template
from django.utils.safestring import SafeString

from audit import presentation
from audit.models import AuditEvent

register = template.Library()


@register.filter
def event_object_url(event: AuditEvent) -> str:
    return presentation.object_url(event)


@register.filter
def event_who(event: AuditEvent) -> SafeString | str:
    return presentation.who(event)
