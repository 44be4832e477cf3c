"""Creating API tokens: the key is returned once and only its hash is stored."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from knox.models import AuthToken

from audit.services import record
from backoffice.errors import InvalidInput
from backoffice.timestamps import iso_utc

MAX_EXPIRY_HOURS = 10 * 365 * 24


@transaction.atomic
def create_token(user, *, actor, expiry_hours=None):
    """A new token for ``user``; returns ``(token, key)``. The key cannot be recovered later.

    ``expiry_hours`` defaults to ``API_TOKEN_EXPIRY_HOURS``. The audit event names the user and
    the expiry, never the key.
    """
    hours = settings.API_TOKEN_EXPIRY_HOURS if expiry_hours is None else expiry_hours
    if isinstance(hours, bool) or not isinstance(hours, int) or not 0 < hours <= MAX_EXPIRY_HOURS:
        raise InvalidInput({"expiry_hours": f"must be between 1 and {MAX_EXPIRY_HOURS} hours"})
    if not user.is_active:
        raise InvalidInput({"user": f"{user.get_username()} is not active"})
    token, key = AuthToken.objects.create(user=user, expiry=timedelta(hours=hours))
    record(
        "api_token.created",
        actor=actor,
        obj=user,
        details={"user": user.get_username(), "expires_at": iso_utc(token.expiry)},
    )
    return token, key
