"""What the MCP tests share: reading a tool's answer, a decision taken in another channel, and
the runner taking up approved jobs."""

import asyncio
import json
from typing import Any

from django.db import connections

from automation import runner
from backoffice.actors import Actor, Source
from claims import services
from claims.models import Decision


def data(result: Any) -> dict[str, Any]:
    """A tool's answer, or its error, as the JSON it carries."""
    return json.loads(result.content[0].text)


async def approved_while_awaited(client: Any, approval_id: str, approver: Any) -> dict[str, Any]:
    """Call ``await_decision`` and, while it waits, let ``approver`` approve in the admin's
    channel; the decision the tool answered."""
    waiter = asyncio.create_task(client.call_tool("await_decision", {"approval_id": approval_id}))
    await asyncio.to_thread(approve, approval_id, approver)
    return data(await waiter)


async def released(client: Any, claimed: dict[str, Any]) -> dict[str, Any]:
    arguments = {"claim_id": claimed["id"], "lease_token": claimed["lease_token"]}
    return data(await client.call_tool("release", arguments))


def approve(approval_id: str, approver: Any) -> None:
    """The approver decides in the admin's channel, in a thread of its own (``to_thread``)."""
    try:
        services.decide(approval_id, Decision.APPROVE, actor=Actor(Source.ADMIN, approver))
    finally:
        connections.close_all()


def run_jobs() -> None:
    """Run the approved jobs in a thread of its own, as a worker of the runner cluster would."""
    try:
        runner.run_next()
    finally:
        connections.close_all()
