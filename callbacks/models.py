from django.db import models

from telegram_bridge.models import Delivery


class CallbackTarget(models.Model):
    """Where an approval request's outcome is POSTed, and whose API token signs it.

    A job's target is its approval request's, with ``job`` set: it hears the decision, then how
    the job ended. ``signer`` is the token's public prefix (knox ``token_key``); the signing
    secret is derived from it (``signing.secret_for``) and never stored.
    """

    approval = models.OneToOneField(
        "claims.ApprovalRequest", on_delete=models.CASCADE, related_name="callback_target"
    )
    job = models.OneToOneField(
        "automation.Job",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="callback_target",
    )
    url = models.URLField(max_length=2000)
    signer = models.CharField(max_length=64, help_text="The signing API token's key prefix.")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.url


class Callback(Delivery):
    """One POST to a callback URL waiting to be made: the callbacks' transactional outbox.

    Written in the transaction of the decision it reports; ``idempotency_key`` names that
    outcome, so it is queued once and the receiver can drop a repeated delivery. The body is kept
    as the exact text that is signed and sent.
    """

    target = models.ForeignKey(CallbackTarget, on_delete=models.CASCADE, related_name="callbacks")
    idempotency_key = models.CharField(max_length=200, unique=True)
    body = models.TextField()

    class Meta:
        ordering = ["created_at", "id"]
        permissions = [("requeue_callback", "Can requeue failed and dead callbacks")]

    def __str__(self) -> str:
        return f"{self.idempotency_key} ({self.status})"
