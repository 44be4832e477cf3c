"""Counting a request's votes against the rules copied onto it.

``Tally`` is what every channel shows ("1 of 2 approvals, waiting for alice, bob") and what
``services.decide`` asks whether the last vote met the quorum.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .models import ApprovalRequest, Vote
from .policies import Rules, eligible_voters

# How many names "waiting for …" lists before it says how many more.
WAITING_NAMES = 5


@dataclass(frozen=True)
class Tally:
    approvals: int
    denials: int
    quorum: int
    deny_needs_quorum: bool
    waiting_for: tuple[str, ...] = ()
    waiting_more: int = 0

    @property
    def outcome(self) -> str:
        """The decision the votes make: ``approve``, ``deny`` or an empty string for none yet."""
        if self.approvals >= self.quorum:
            return Vote.Choice.APPROVE
        if self.denials >= (self.quorum if self.deny_needs_quorum else 1):
            return Vote.Choice.DENY
        return ""

    @property
    def counted(self) -> str:
        """``1 of 2 approvals`` (and the denials, when a denial also needs the quorum)."""
        text = f"{self.approvals} of {self.quorum} approval{'s' if self.quorum > 1 else ''}"
        if self.deny_needs_quorum and self.quorum > 1:
            text += f", {self.denials} of {self.quorum} denials"
        return text

    def summary(self) -> str:
        """``1 of 2 approvals, waiting for alice, bob``."""
        if self.outcome:
            return self.counted
        if not self.waiting_for:
            return f"{self.counted}, no eligible approver left to vote"
        names = ", ".join(self.waiting_for)
        more = f" and {self.waiting_more} more" if self.waiting_more else ""
        return f"{self.counted}, waiting for {names}{more}"

    def as_dict(self) -> dict[str, object]:
        return {
            "approvals": self.approvals,
            "denials": self.denials,
            "quorum": self.quorum,
            "deny_needs_quorum": self.deny_needs_quorum,
            "waiting_for": list(self.waiting_for),
            "summary": self.summary(),
        }


def tally(
    approval: ApprovalRequest, votes: Iterable[Vote] | None = None, *, waiting: bool = True
) -> Tally:
    """Count ``votes`` (default: the request's votes); ``waiting`` also names who has not voted
    while the request still awaits a decision (one query more)."""
    rules = Rules.from_request(approval)
    votes = list(approval.votes.all() if votes is None else votes)
    choices = [vote.choice for vote in votes]
    waiting_for: list[str] = []
    more = 0
    if waiting and approval.status in ApprovalRequest.AWAITING_DECISION:
        voted = {vote.voter_id for vote in votes}
        users = eligible_voters(approval).exclude(pk__in=voted).order_by("username")
        names = list(users.values_list("username", flat=True)[: WAITING_NAMES + 1])
        waiting_for = names[:WAITING_NAMES]
        if len(names) > WAITING_NAMES:
            more = users.count() - WAITING_NAMES
    return Tally(
        approvals=choices.count(Vote.Choice.APPROVE),
        denials=choices.count(Vote.Choice.DENY),
        quorum=rules.quorum,
        deny_needs_quorum=rules.deny_needs_quorum,
        waiting_for=tuple(waiting_for),
        waiting_more=more,
    )
