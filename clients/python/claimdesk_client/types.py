"""The shapes of the API's answers, as the server's ``claims/representation.py`` (and
``automation/representation.py``) makes them.

They are the JSON objects themselves (``TypedDict``), so nothing is lost when the server adds a
field; a type checker knows the ones listed here.
"""

from typing import Any, NotRequired, TypedDict


class Claim(TypedDict):
    id: int
    story: str
    todolist: str
    owner: str
    agent_id: str
    fingerprint: str
    holder: str
    fencing_token: int
    ttl_seconds: int
    version: int
    acquired_at: str | None
    expires_at: str | None
    released_at: str | None
    live: bool
    seconds_left: int
    frozen: bool
    frozen_reason: str
    waiting: int
    previous_owner: str
    previous_agent_id: str
    created_at: str
    updated_at: str


class Grant(Claim):
    """A claim's answer: ``outcome`` is acquired, refreshed or taken_over; ``lease_token`` proves
    holdership and is shown in this answer only."""

    outcome: str
    lease_token: str | None


class Approval(TypedDict):
    id: str
    kind: str
    text: str
    payload: dict[str, Any]
    requested_by: str
    agent_id: str
    claim: int | None
    status: str
    decided_by: str | None
    decided_at: str | None
    decision_source: str
    decision_note: str
    expires_at: str | None
    created_at: str
    updated_at: str
    policy: str
    votes: list[dict[str, Any]]
    tally: dict[str, Any]


class AuditEvent(TypedDict):
    id: int
    timestamp: str
    actor: str | None
    actor_label: str
    action: str
    source: str
    object_type: str
    object_id: str
    trace_id: str
    details: dict[str, Any]


class Job(TypedDict):
    """As ``automation/representation.py`` makes it; ``changed`` only in a cancel's answer."""

    id: str
    short_id: str
    name: str
    status: str
    mode: str
    live: bool
    manifest_sha256: str
    manifest_short: str
    approval: str
    approval_status: str
    submitted_by: str
    agent_id: str
    reason: str
    started_at: str | None
    finished_at: str | None
    manifest: dict[str, Any]
    steps: list[dict[str, Any]]
    changed: NotRequired[bool]
