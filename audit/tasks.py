"""What django-q2 runs for the audit trail."""

from backoffice.actors import system_actor

from . import services


def checkpoint() -> int | None:
    """Publish a checkpoint of the chain head if the chain grew; returns its sequence number."""
    made = services.checkpoint(actor=system_actor("audit_checkpoint"))
    return made.seq if made else None
