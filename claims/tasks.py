"""What django-q2 runs for claims and approvals.

Both are meant for a schedule (every minute): a request nobody decided in time must not stay
actionable, and its approvers are reminded and escalated to on the policy's timetable.
"""

from backoffice.actors import system_actor

from . import follow_up, services


def expire_approvals():
    """Apply the default outcome to overdue pending or postponed requests; returns how many."""
    return len(services.expire_overdue(actor=system_actor("expire_approvals")))


def follow_up_approvals():
    """Send the reminders and escalations that are due; returns how many of each."""
    actor = system_actor("follow_up_approvals")
    return {
        "reminded": len(follow_up.send_reminders(actor=actor)),
        "escalated": len(follow_up.escalate(actor=actor)),
    }
