from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from knox.models import AuthToken


class IdempotencyKey(models.Model):
    """One ``Idempotency-Key`` a user sent with a POST, and the answer it got.

    The row is committed before the work starts, so a second request with the same key finds it:
    while ``response_status`` is empty the first request is still running; afterwards the stored
    answer is replayed. The unique constraint is what makes two simultaneous requests see each
    other.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(
        max_length=64, help_text="SHA-256 of the method, path and canonical JSON body."
    )
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="one_idempotency_key_per_user"),
        ]

    def __str__(self):
        return f"{self.key} ({self.response_status or 'in progress'})"

    @property
    def in_progress(self):
        return self.response_status is None


class ApiToken(AuthToken):
    """An agent's API token, as staff see it in the admin (a knox token, stored hashed)."""

    class Meta:
        proxy = True
        verbose_name = "API token"
