from django.conf import settings
from django.db import models


class Delivery(models.Model):
    """Where one outbound call stands: queued, being sent, sent, failed (to retry) or dead.

    The Telegram outbox and the decision callbacks (``callbacks.Callback``) share these fields and
    the retry policy that fills them (``delivery.backoff``, ``OUTBOX_*``).
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed (will retry)"
        DEAD = "dead", "Dead"

    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    attempts = models.PositiveIntegerField(default=0)
    requeues = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_index=True)
    last_error = models.TextField(blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # Indexed for the retries-per-hour figure (monitoring) over a large outbox.
    failed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class OutboundMessage(Delivery):
    """One Bot API call waiting to be made: the transactional outbox.

    Rows are written in the same transaction as the change that causes them and delivered by a
    worker after commit. ``dedupe_key`` names the domain event, so the same event is never queued
    twice.
    """

    method = models.CharField(max_length=64, default="sendMessage")
    chat_id = models.BigIntegerField(db_index=True)
    payload = models.JSONField(default=dict)
    dedupe_key = models.CharField(max_length=200, unique=True)
    telegram_message_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]
        permissions = [("requeue_outboundmessage", "Can requeue failed and dead messages")]

    def __str__(self):
        return f"{self.method} to {self.chat_id} ({self.status})"


class InboundUpdate(models.Model):
    """A raw update from Telegram, stored before it is acknowledged and processed on a worker."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored"
        FAILED = "failed", "Failed"

    update_id = models.BigIntegerField(unique=True)
    payload = models.JSONField()
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.RECEIVED, db_index=True
    )
    error = models.TextField(blank=True)
    # A database default, so the release before this one can still insert rows.
    duplicates = models.PositiveIntegerField(
        default=0, db_default=0, help_text="How many times Telegram delivered this update again."
    )
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["update_id"]
        permissions = [("retry_inboundupdate", "Can retry failed inbound updates")]

    def __str__(self):
        return f"update {self.update_id} ({self.status})"


class TelegramAccount(models.Model):
    """Links a Telegram user to a Django user; only linked approvers may decide from Telegram."""

    telegram_user_id = models.BigIntegerField(unique=True)
    telegram_username = models.CharField(max_length=64, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="telegram_accounts"
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "Telegram account link"

    def __str__(self):
        name = f"@{self.telegram_username}" if self.telegram_username else self.telegram_user_id
        return f"{name} → {self.user}"


class PollerLease(models.Model):
    """Who may run ``getUpdates`` right now: one row per lock name, held until ``expires_at``.

    A lease rather than a process lock, so it works the same on SQLite and PostgreSQL and across
    hosts; the holder renews it before every long poll, and a crashed holder's lease runs out.
    """

    name = models.CharField(max_length=64, unique=True)
    holder = models.CharField(max_length=200, help_text="host:pid of the poller holding the lease.")
    expires_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.name} held by {self.holder} until {self.expires_at:%Y-%m-%d %H:%M:%S}"


class RateLimitState(models.Model):
    """The send-rate bookkeeping ``telegram_bridge.ratelimit`` shares between workers (no Redis).

    One row per chat that was sent to (``chat:<id>``) and one ``global`` row that every
    reservation locks first, which serialises reservations on SQLite and PostgreSQL alike.
    Times are Unix seconds, as the limiter's arithmetic is in seconds.
    """

    key = models.CharField(max_length=64, unique=True)
    next_at = models.FloatField(default=0.0, help_text="When this chat's next send may go out.")
    paused_until = models.FloatField(
        default=0.0, help_text="Until when Telegram asked us not to send (429 retry_after)."
    )
    reserved_slots = models.JSONField(
        default=list,
        blank=True,
        help_text="Global row only: send slots already handed out, as indices of 1/rate seconds.",
    )
    sends = models.JSONField(
        default=dict,
        blank=True,
        help_text=(
            "Global row only: admitted sends, each until when it counts against the global rate"
            " (its answer plus the window, or a call's longest life while it is in flight)."
        ),
    )

    class Meta:
        verbose_name = "rate limit state"

    def __str__(self):
        return self.key
