"""``manage.py mcp_server`` over stdio: the SDK's client spawns it against the test database."""

import asyncio
import json
import os
import subprocess
import sys

from django.conf import settings
from mcp import Client, StdioServerParameters
from model_bakery import baker

from backoffice.cli import EXIT_USAGE
from claims.models import Claim
from tests.telegram.worker import MANAGE_PY, database_url

from .answers import approved_while_awaited, data, released


def server(*options):
    return StdioServerParameters(
        command=sys.executable,
        args=[str(MANAGE_PY), "mcp_server", *options],
        env={**os.environ, "DATABASE_URL": database_url(), "VAR_DIR": str(settings.VAR_DIR)},
        cwd=str(settings.BASE_DIR),
    )


def test_agent_on_this_machine_claims_asks_awaits_and_releases_as_its_user(
    transactional_db, approver
):
    baker.make("auth.User", username="ci", is_active=True)

    async def session():
        async with Client(server("--user", "ci")) as client:
            listed = await client.list_tools()
            claimed = data(
                await client.call_tool(
                    "claim", {"story": "s-1", "todolist": "t-1", "agent_id": "local"}
                )
            )
            inspected = data(await client.call_tool("inspect", {"story": "s-1", "todolist": "t-1"}))
            asked = data(
                await client.call_tool(
                    "request_approval",
                    {"kind": "claim", "text": "Work on s-1?", "claim_id": claimed["id"]},
                )
            )
            decided = await approved_while_awaited(client, asked["id"], approver)
            ended = await released(client, claimed)
            return listed, claimed, inspected, decided, ended

    listed, claimed, inspected, decided, ended = asyncio.run(session())

    assert "await_decision" in {tool.name for tool in listed.tools}
    assert claimed["owner"] == "ci" and claimed["live"] is True
    assert inspected["fencing_token"] == claimed["fencing_token"]
    assert decided["status"] == "approved" and decided["requested_by"] == "ci"
    assert ended["live"] is False
    assert Claim.objects.get().released_at is not None


def test_server_for_an_unknown_user_exits_with_a_usage_error(transactional_db):
    parameters = server("--user", "nobody")
    env = {**parameters.env, "CLI_SERVICE_USER": ""}

    finished = subprocess.run(
        [parameters.command, *parameters.args],
        env=env,
        cwd=parameters.cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert finished.returncode == EXIT_USAGE
    assert json.loads(finished.stderr)["error"] == "invalid"
    assert finished.stdout == ""
