"""Who did something, and through which channel.

Every service takes an ``Actor`` so that the audit trail reads the same whichever channel (admin,
API, CLI, Telegram, a worker) triggered the change. Each channel builds its actor once, at its edge.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User


class Source:
    ADMIN = "admin"
    API = "api"
    CLI = "cli"
    TELEGRAM = "telegram"
    SYSTEM = "system"

    choices = [
        (ADMIN, "Admin"),
        (API, "API"),
        (CLI, "CLI"),
        (TELEGRAM, "Telegram"),
        (SYSTEM, "System"),
    ]


def new_trace_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Actor:
    """The user (if any) or agent behind a change, the channel it came through and its trace id."""

    source: str
    user: User | AnonymousUser | None = None
    label: str = ""
    trace_id: str = field(default_factory=new_trace_id)

    @property
    def name(self) -> str:
        """Who, as shown everywhere: "user (label)", the username, the label, or the source.

        The username is the identity the channel checked; the label (an agent id, a command
        name) is only a description and never stands in for a user.
        """
        username = self.user.get_username() if self.user is not None else ""
        if username and self.label and self.label != username:
            return f"{username} ({self.label})"
        return username or self.label or self.source

    @property
    def authenticated_user(self) -> User | None:
        """The user to store as the one who acted; None for agents, the system, anonymous."""
        if self.user is not None and self.user.is_authenticated:
            return self.user
        return None

    def has_perm(self, perm: str) -> bool:
        return self.user is not None and self.user.is_active and self.user.has_perm(perm)


def system_actor(label: str = "system") -> Actor:
    return Actor(source=Source.SYSTEM, label=label)
