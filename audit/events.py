"""The events the audit trail publishes, through the registry of ``claims.events``.

Channels that publish checkpoints outside the database (the Telegram bridge's audit channel)
subscribe in their ``AppConfig.ready()``; the audit app never knows who listens.
"""

from dataclasses import dataclass

from claims.events import Event

from .models import Checkpoint


@dataclass(frozen=True)
class AuditCheckpointed(Event):
    """The chain head was signed; publish ``checkpoint`` where the database's writers cannot
    reach it."""

    checkpoint: Checkpoint
