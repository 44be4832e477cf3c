"""Long-polling ``getUpdates``: the way to receive updates where Telegram cannot reach a webhook.

Every update is stored (and committed) before the offset moves past it, so a poller that crashes
at any point loses nothing: Telegram keeps unconfirmed updates and hands them out again, and the
unique ``update_id`` turns the second copy into a no-op. The offset lives in memory only; a new
poller starts without one and so first receives whatever Telegram still holds.

Telegram allows one ``getUpdates`` consumer per bot, so one poller runs at a time: it holds a lease
(``PollerLease``) that it renews before every long poll. A second poller is refused, and a crashed
poller's lease runs out after ``TELEGRAM_POLL_LEASE`` seconds.

An empty answer that comes back at once (a proxy or an emulator that does not hold the long poll)
is followed by a pause up to ``TELEGRAM_POLL_EMPTY_INTERVAL`` seconds after the call began, so
such a server does not make the poller spin.
"""

import logging
import os
import socket
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from backoffice.errors import InvalidInput
from backoffice.redaction import redact

from . import inbound
from .client import BotApiError, PermanentError, RetryAfter, get_client
from .models import PollerLease

logger = logging.getLogger(__name__)

LEASE_NAME = "telegram_poll"
ALLOWED_UPDATES = list(inbound.HANDLED_TYPES)
# After a failed getUpdates the poller waits, doubling from the first to the last value.
RETRY_WAIT_FIRST = 1.0
RETRY_WAIT_MAX = 60.0


class PollingError(Exception):
    """Polling cannot go on; the message says why and what to do."""


class PollerBusy(PollingError):
    pass


class WebhookActive(PollingError):
    pass


def holder_name():
    return f"{socket.gethostname()}:{os.getpid()}"


def acquire_lease(holder, seconds):
    """Take the poller lease for ``holder``, or raise ``PollerBusy`` naming who holds it."""
    now = timezone.now()
    with transaction.atomic():
        lease, created = PollerLease.objects.select_for_update().get_or_create(
            name=LEASE_NAME,
            defaults={"holder": holder, "expires_at": now + timedelta(seconds=seconds)},
        )
        if created:
            return lease
        if lease.holder != holder and lease.expires_at > now:
            raise PollerBusy(
                f"Another poller ({lease.holder}) is running; its lease ends at "
                f"{lease.expires_at:%Y-%m-%d %H:%M:%S} UTC. If it crashed, start again after that."
            )
        lease.holder = holder
        lease.expires_at = now + timedelta(seconds=seconds)
        lease.save(update_fields=["holder", "expires_at", "updated_at"])
    return lease


def release_lease(holder):
    PollerLease.objects.filter(name=LEASE_NAME, holder=holder).delete()


class Poller:
    """Stores updates from ``getUpdates`` until stopped; see the module docstring."""

    def __init__(self, *, timeout=None, limit=None, process_inline=False, client=None):
        self.timeout = settings.TELEGRAM_POLL_TIMEOUT if timeout is None else timeout
        self.limit = settings.TELEGRAM_POLL_LIMIT if limit is None else limit
        self.process_inline = process_inline
        self.client = client or get_client()
        self.holder = holder_name()
        self.offset = None
        self.stored = 0
        self._stopping = threading.Event()

    def stop(self):
        """Ask the poller to stop once the current request is done (safe from a signal handler)."""
        self._stopping.set()

    @property
    def stopping(self):
        return self._stopping.is_set()

    def run(self, *, once=False):
        """Poll until stopped (or once); raises ``PollingError`` when polling cannot go on."""
        lease_seconds = max(settings.TELEGRAM_POLL_LEASE, self.timeout + self.client.read_timeout)
        try:
            wait = RETRY_WAIT_FIRST
            while not self.stopping:
                acquire_lease(self.holder, lease_seconds)
                started = time.monotonic()
                try:
                    received = self.poll_once()
                except RetryAfter as error:
                    self._stopping.wait(max(error.retry_after or wait, RETRY_WAIT_FIRST))
                    continue
                except PermanentError as error:
                    raise PollingError(
                        f"Telegram refused getUpdates: {error.description}"
                    ) from None
                except BotApiError as error:
                    if 409 in (error.status_code, error.error_code):
                        raise WebhookActive(
                            "Telegram answers getUpdates with 409 Conflict: a webhook is set for "
                            "this bot. Either keep the webhook (and stop polling) or delete it "
                            "with the deleteWebhook Bot API method, then poll again."
                        ) from None
                    logger.warning("getUpdates failed, retrying in %.0fs: %s", wait, error)
                    self._stopping.wait(wait)
                    wait = min(wait * 2, RETRY_WAIT_MAX)
                    continue
                wait = RETRY_WAIT_FIRST
                if once:
                    break
                if not received:
                    spacing = settings.TELEGRAM_POLL_EMPTY_INTERVAL
                    self._stopping.wait(max(spacing - (time.monotonic() - started), 0.0))
        finally:
            release_lease(self.holder)

    def poll_once(self):
        """One ``getUpdates`` call; stores each update before moving the offset past it."""
        request = {"timeout": self.timeout, "limit": self.limit, "allowed_updates": ALLOWED_UPDATES}
        if self.offset is not None:
            request["offset"] = self.offset
        updates = self.client.call(
            "getUpdates", request, timeout=self.timeout + self.client.read_timeout
        )
        for update in updates or []:
            self.take(update)
        return len(updates or [])

    def take(self, update):
        """Store one update, process it here if asked, then confirm it by moving the offset."""
        try:
            stored = inbound.store(update, dispatch=not self.process_inline)
        except InvalidInput as error:
            logger.warning("Skipping an update Telegram sent: %s", redact(error.message))
        else:
            self.stored += stored.created
            if self.process_inline:
                inbound.process(stored.update.pk)
        update_id = update.get("update_id") if isinstance(update, dict) else None
        if isinstance(update_id, int) and not isinstance(update_id, bool):
            self.offset = update_id + 1
