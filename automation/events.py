"""The events jobs publish, through the one registry of ``claims.events``.

Published inside the transaction of the change, after its audit event; channels subscribe in
their ``AppConfig.ready()`` (the Telegram bridge edits the request's message when a job ends).
"""

from dataclasses import dataclass

from claims.events import Event, publish

from .models import Job


@dataclass(frozen=True)
class JobEvent(Event):
    job: Job


@dataclass(frozen=True)
class JobSubmitted(JobEvent):
    """A manifest was submitted; its approval request was created with it."""


@dataclass(frozen=True)
class JobQueued(JobEvent):
    """The job may run: its request was approved, it resumes after a lost worker, or re-runs."""


@dataclass(frozen=True)
class JobStarted(JobEvent):
    """A worker took the job up (again, for a resume or a re-run)."""


@dataclass(frozen=True)
class JobEnded(JobEvent):
    """The job succeeded, failed, was cancelled or refused; ``job.status`` says which.

    ``request_executed``: this end moved the approval request to executed (``ApprovalExecuted``
    was published just before, with the job already in its final state).
    """

    request_executed: bool = False


__all__ = ["JobEnded", "JobEvent", "JobQueued", "JobStarted", "JobSubmitted", "publish"]
