"""What django-q2 runs for callbacks: ``deliver`` is queued after the decision commits (and
scheduled for each retry); ``sweep`` is meant for a schedule every minute."""

from . import delivery


def deliver(callback_id: int) -> None:
    delivery.deliver(callback_id)


def sweep() -> dict[str, int]:
    return delivery.sweep()
