"""What django-q2 runs for claims and approvals.

``expire_approvals`` is meant for a schedule (every few minutes): a request nobody decided in
time must not stay actionable.
"""

from backoffice.actors import system_actor

from . import services


def expire_approvals():
    """Move overdue pending or postponed requests to expired; returns how many."""
    return len(services.expire_overdue(actor=system_actor("expire_approvals")))
