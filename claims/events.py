"""The events claims publish, and the registry of who listens.

The domain never knows its listeners: a service publishes an event and every subscriber (the
Telegram bridge registers its own in ``AppConfig.ready``) runs inside the service's transaction,
so whatever it writes (an outbox row) commits with the change or not at all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .models import ApprovalRequest, Vote
from .voting import Tally


@dataclass(frozen=True)
class VoteCounted:
    """A vote was cast or changed and the request still awaits its decision."""

    approval: ApprovalRequest
    vote: Vote
    tally: Tally


@dataclass(frozen=True)
class ReminderDue:
    """The request is still undecided at one of its policy's reminder times."""

    approval: ApprovalRequest
    number: int
    tally: Tally


@dataclass(frozen=True)
class Escalated:
    """The request is still undecided after its policy's escalation time."""

    approval: ApprovalRequest
    group_id: int | None
    chat_id: int | None
    widened: bool
    tally: Tally


@dataclass(frozen=True)
class DeadlinePassed:
    """Nobody decided in time; the policy's default outcome was applied (``status`` says which)."""

    approval: ApprovalRequest
    outcome: str


Subscriber = Callable[[Any], None]
_subscribers: dict[type, list[Subscriber]] = defaultdict(list)


def subscribe(event_type: type, subscriber: Subscriber) -> None:
    """Call ``subscriber(event)`` for every ``event_type`` published; registering twice is once."""
    if subscriber not in _subscribers[event_type]:
        _subscribers[event_type].append(subscriber)


def publish(event: object) -> None:
    for subscriber in list(_subscribers[type(event)]):
        subscriber(event)
