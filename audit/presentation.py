"""How an audit event reads in the admin: who did it, and a link to what it was done to.

Shared by the audit list, the "History" page of every object and the dashboard's recent actions,
so an event reads the same wherever staff meet it.
"""

from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from backoffice.actors import Source

from .models import AuditEvent


def object_url(event: AuditEvent) -> str:
    """The admin page of the event's object, or "" when it has none (or no admin)."""
    app_label, _, model_name = event.object_type.partition(".")
    if not (model_name and event.object_id):
        return ""
    try:
        return reverse(f"admin:{app_label}_{model_name}_change", args=[event.object_id])
    except NoReverseMatch:
        return ""


def _channel_label(event: AuditEvent, username: str) -> str:
    """What the channel called the actor besides the username, e.g. the Telegram id "1001".

    ``Actor.name`` stored it as "username (label)"; a label equal to the username adds nothing.
    """
    prefix = f"{username} ("
    if event.actor_label.startswith(prefix) and event.actor_label.endswith(")"):
        return event.actor_label[len(prefix) : -1]
    return ""


def who(event: AuditEvent) -> SafeString | str:
    """The actor, linked to their user page: "approver via Telegram 1001", "pat", "deploy-bot".

    Needs ``event.actor`` loaded (``select_related("actor")``) to stay one query per page.
    """
    if event.actor is None:
        return event.actor_label
    username = event.actor.get_username()
    label = _channel_label(event, username)
    if event.source == Source.TELEGRAM and label:
        suffix = f" via Telegram {label}"
    else:
        suffix = f" ({label})" if label else ""
    try:
        url = reverse("admin:auth_user_change", args=[event.actor_id])
    except NoReverseMatch:
        return f"{username}{suffix}"
    return format_html('<a href="{}">{}</a>{}', url, username, suffix)
