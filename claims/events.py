"""The events claims and approval requests publish, and the registry of who listens.

A service publishes an event inside its transaction, right after the change and its audit event.
Subscribers run at once, in the same transaction, so whatever they write (an outbox row, say)
commits with the change or not at all, and a subscriber that fails rolls the change back. The
domain never knows who listens: channels subscribe in their ``AppConfig.ready()``, and
``docs/architecture.md`` lists who subscribes to what.

Events are small and typed: who acted, the object as the change left it, and what the object
alone no longer tells (the status it came from, the decision taken).
"""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django.db import transaction

from backoffice.actors import Actor

from .models import ApprovalRequest, Claim, Vote
from .voting import Tally


@dataclass(frozen=True)
class Event:
    actor: Actor


# --- Claims ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimEvent(Event):
    claim: Claim


@dataclass(frozen=True)
class ClaimAcquired(ClaimEvent):
    """A free work item (never claimed, or released) got a holder."""


@dataclass(frozen=True)
class ClaimRefreshed(ClaimEvent):
    """The holder extended its lease."""


@dataclass(frozen=True)
class ClaimTakenOver(ClaimEvent):
    """An expired lease, or any lease taken by staff, went to a new holder with the next
    fencing token."""

    previous_owner: str
    previous_agent_id: str


@dataclass(frozen=True)
class ClaimReleased(ClaimEvent):
    """The lease ended: released by its holder, or ``forced`` by staff."""

    forced: bool = False


@dataclass(frozen=True)
class ClaimFrozen(ClaimEvent):
    """Staff stopped anyone claiming the work item."""


@dataclass(frozen=True)
class ClaimUnfrozen(ClaimEvent):
    """The work item may be claimed again."""


# --- Approval requests ----------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalEvent(Event):
    approval: ApprovalRequest


@dataclass(frozen=True)
class ApprovalRequested(ApprovalEvent):
    """Someone asked the approvers a question."""


@dataclass(frozen=True)
class ApprovalDecided(ApprovalEvent):
    """A request was approved, denied, postponed or reopened."""

    decision: str
    previous_status: str


@dataclass(frozen=True)
class ApprovalExpired(ApprovalEvent):
    """Nobody decided the request in time."""

    previous_status: str


@dataclass(frozen=True)
class VoteCounted(ApprovalEvent):
    """An approver voted (or changed their vote) and the request still awaits its decision."""

    vote: Vote
    tally: Tally


@dataclass(frozen=True)
class ApprovalDefaulted(ApprovalEvent):
    """Nobody decided by the deadline and the policy's default outcome approved or denied the
    request: a decision by the rules, never by a person."""

    decision: str
    previous_status: str


@dataclass(frozen=True)
class ReminderDue(ApprovalEvent):
    """The request is still undecided at its policy's ``number``-th reminder time."""

    number: int
    tally: Tally


@dataclass(frozen=True)
class ApprovalEscalated(ApprovalEvent):
    """The request is still undecided at its policy's escalation time."""

    group_id: int | None
    chat_id: int | None
    widened: bool
    tally: Tally


@dataclass(frozen=True)
class ApprovalExecuted(ApprovalEvent):
    """Whoever ran what an approved request asked for reported it done."""


@dataclass(frozen=True)
class ApprovalArchived(ApprovalEvent):
    """A finished request was filed away."""

    previous_status: str


# --- The registry ---------------------------------------------------------------------------

E = TypeVar("E", bound=Event)

_subscribers: defaultdict[type[Event], list[Callable[[Event], None]]] = defaultdict(list)


def subscribe(event_type: type[E], subscriber: Callable[[E], None]) -> None:
    """Call ``subscriber`` with every ``event_type`` published from now on (once per pair)."""
    subscribers = _subscribers[event_type]
    if subscriber not in subscribers:
        subscribers.append(subscriber)  # type: ignore[arg-type]


def subscribers(event_type: type[Event]) -> list[Callable[[Event], None]]:
    """Who listens to ``event_type``, in the order they subscribed."""
    return list(_subscribers.get(event_type, ()))


def publish(event: Event) -> None:
    """Run every subscriber of ``event``'s type; only inside the transaction of the change."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError(f"{type(event).__name__} published outside a transaction")
    for subscriber in subscribers(type(event)):
        subscriber(event)
