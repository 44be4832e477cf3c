"""What django-q2 runs for the Telegram bridge.

``deliver`` is queued by ``outbox.enqueue`` after commit. ``sweep`` and ``auto_requeue`` are meant
for schedules: ``sweep`` every minute (it delivers whatever is due, e.g. after the workers were
down, and recovers rows a dead worker left ``sending``), ``auto_requeue`` every 15 minutes.
``drain_backlog`` is queued by a drain whose time ran out with messages still waiting.
``process_update`` is queued by the webhook and the poller after commit; ``process_stale_updates``
is meant for a schedule every minute (updates whose task was lost); ``refresh_approval_message``
is scheduled once by ``notifications`` when a change races the sending of its message.
"""

from django.conf import settings

from . import dead_letters, delivery, inbound, notifications


def deliver(message_id):
    """Send one outbound message (retries and dead letters: ``delivery.deliver``).

    Then help with any backlog for up to ``OUTBOX_TASK_DRAIN_SECONDS``: after a burst, one task
    per message could not keep up with the rate limit, while the bulk drain does; the tasks
    whose message went out in someone's drain find nothing left to do.
    """
    delivery.deliver(message_id)
    drain_backlog()


def drain_backlog():
    """Drain for up to ``OUTBOX_TASK_DRAIN_SECONDS``; queued again while a backlog remains when
    time runs out (``delivery.drain``'s ``hand_on``)."""
    return delivery.drain(seconds=settings.OUTBOX_TASK_DRAIN_SECONDS, hand_on=True)


def sweep():
    """Recover stale ``sending`` rows, then deliver every due message; returns the counts."""
    recovered = delivery.recover_stale()
    return {"recovered": recovered, **delivery.drain()}


def auto_requeue():
    """Give one batch of recently dead messages another round; returns how many."""
    return len(dead_letters.auto_requeue())


def process_update(update_pk):
    """Act on one stored inbound update (queued by the webhook and the poller after commit)."""
    inbound.process(update_pk)


def process_stale_updates():
    """Process inbound updates whose task was lost (broker down); for a schedule every minute."""
    return inbound.process_stale()


def refresh_approval_message(approval_id):
    """Edit the approver chat's message once its original has been sent (``notifications``)."""
    notifications.refresh_approval_message(approval_id)
