"""The MCP server over streamable HTTP, through a real client session of the ``mcp`` SDK."""

import asyncio

import httpx2
import pytest
from model_bakery import baker

from automation.models import Job
from backoffice.actors import Actor, Source
from claims import services
from claims.models import ApprovalRequest

from .answers import approve, approved_while_awaited, data, released, run_jobs

TOOLS = {
    "claim",
    "refresh",
    "release",
    "inspect",
    "request_approval",
    "await_decision",
    "submit_manifest",
    "job_status",
}


def test_agent_claims_asks_and_awaits_a_decision_taken_in_another_channel(
    mcp_http, agent_key, approver
):
    async def session():
        async with mcp_http.session(agent_key) as client:
            listed = await client.list_tools()
            claimed = data(
                await client.call_tool(
                    "claim", {"story": "s-1", "todolist": "t-1", "agent_id": "a-1"}
                )
            )
            asked = data(
                await client.call_tool(
                    "request_approval",
                    {"kind": "claim", "text": "Deploy s-1?", "claim_id": claimed["id"]},
                )
            )
            undecided = data(
                await client.call_tool("await_decision", {"approval_id": asked["id"], "timeout": 0})
            )
            decided = await approved_while_awaited(client, asked["id"], approver)
            ended = await released(client, claimed)
            return listed, claimed, asked, undecided, decided, ended

    listed, claimed, asked, undecided, decided, ended = asyncio.run(session())

    assert {tool.name for tool in listed.tools} == TOOLS
    assert all(tool.description and tool.input_schema for tool in listed.tools)
    assert claimed["owner"] == "agent-owner" and claimed["lease_token"]
    assert asked["status"] == undecided["status"] == "pending"
    assert decided["status"] == "approved" and decided["decided_by"] == "approver"
    assert ended["live"] is False
    assert ApprovalRequest.objects.get().requested_by == "agent-owner"


def test_domain_errors_carry_the_api_codes(mcp_http, agent_key):
    someone = baker.make("auth.User", username="someone")
    held = services.claim(
        story="s-1", todolist="t-1", agent_id="other", actor=Actor(Source.API, someone)
    ).claim

    async def session():
        async with mcp_http.session(agent_key) as client:
            return [
                await client.call_tool(
                    "claim", {"story": "s-1", "todolist": "t-1", "agent_id": "a-1"}
                ),
                await client.call_tool("inspect", {"claim_id": 999}),
                await client.call_tool("release", {"claim_id": held.pk, "lease_token": "wrong"}),
                await client.call_tool("request_approval", {"kind": "nope", "text": "x"}),
            ]

    conflict, missing, not_holder, invalid = asyncio.run(session())

    assert all(result.is_error for result in (conflict, missing, not_holder, invalid))
    assert data(conflict)["error"] == "conflict"
    assert data(conflict)["holder"] == {"owner": "someone", "agent_id": "other"}
    assert data(missing)["error"] == "not_found"
    assert data(not_holder)["error"] == "not_holder"
    assert data(invalid)["error"] == "invalid" and "kind" in data(invalid)["fields"]


def test_pending_request_text_is_a_resource(mcp_http, agent, agent_key):
    asked = services.request_approval(
        kind="command", text="rm -rf build/", actor=Actor(Source.API, agent)
    )

    async def session():
        async with mcp_http.session(agent_key) as client:
            return await client.read_resource(f"claimdesk://approvals/{asked.pk}")

    resource = asyncio.run(session())

    assert '"text": "rm -rf build/"' in resource.contents[0].text


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic abc"])
def test_request_without_a_valid_token_is_refused(mcp_http, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    answer = httpx2.post(
        mcp_http.url,
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={**headers, "Accept": "application/json, text/event-stream"},
    )

    assert answer.status_code == 401
    assert answer.json()["error"] == "not_authenticated"


def test_token_of_an_inactive_user_is_refused(mcp_http, agent, agent_key):
    agent.is_active = False
    agent.save()

    answer = httpx2.post(mcp_http.url, json={}, headers={"Authorization": f"Token {agent_key}"})

    assert answer.status_code == 401


def test_answer_is_the_user_of_the_token_not_a_label(mcp_http, agent_key):
    baker.make("auth.User", username="someone-else")

    async def session():
        async with mcp_http.session(agent_key) as client:
            return await client.call_tool(
                "claim", {"story": "s", "todolist": "t", "agent_id": "someone-else"}
            )

    claimed = data(asyncio.run(session()))

    assert claimed["owner"] == "agent-owner" and claimed["agent_id"] == "someone-else"


def test_request_over_mcp_carries_a_callback_signed_with_the_token(mcp_http, agent_key, settings):
    settings.CALLBACK_ALLOWED_HOSTS = ["hooks.example.com"]

    async def session():
        async with mcp_http.session(agent_key) as client:
            return await client.call_tool(
                "request_approval",
                {"kind": "command", "text": "x", "callback_url": "https://hooks.example.com/h"},
            )

    asked = data(asyncio.run(session()))

    target = ApprovalRequest.objects.get(pk=asked["id"]).callback_target
    assert target.url == "https://hooks.example.com/h"
    assert agent_key.startswith(target.signer)


def test_a_stale_fencing_token_is_refused_with_the_current_one(mcp_http, agent_key):
    async def session():
        async with mcp_http.session(agent_key) as client:
            granted = data(
                await client.call_tool("claim", {"story": "s", "todolist": "t", "agent_id": "a"})
            )
            return granted, await client.call_tool(
                "refresh",
                {
                    "claim_id": granted["id"],
                    "lease_token": granted["lease_token"],
                    "fencing_token": granted["fencing_token"] - 1,
                },
            )

    granted, stale = asyncio.run(session())

    assert stale.is_error
    assert data(stale)["error"] == "stale_fence"
    assert data(stale)["fencing_token"] == granted["fencing_token"]


RELEASE = {
    "name": "release",
    "steps": [{"id": "tag", "argv": ["echo", "v1"]}, {"id": "notes", "argv": ["true"]}],
}


def test_agent_submits_a_manifest_awaits_approval_and_follows_the_job(
    mcp_http, agent_key, approver, settings
):
    settings.AUTOMATION_COMMAND_ALLOWLIST = ["echo", "true"]

    async def session():
        async with mcp_http.session(agent_key) as client:
            submitted = data(
                await client.call_tool("submit_manifest", {"manifest": RELEASE, "agent_id": "a-1"})
            )
            waiter = asyncio.create_task(
                client.call_tool("await_decision", {"approval_id": submitted["approval"]})
            )
            await asyncio.to_thread(approve, submitted["approval"], approver)
            decided = data(await waiter)
            queued = data(await client.call_tool("job_status", {"job_id": submitted["id"][:8]}))
            await asyncio.to_thread(run_jobs)
            ended = data(await client.call_tool("job_status", {"job_id": submitted["id"]}))
            return submitted, decided, queued, ended

    submitted, decided, queued, ended = asyncio.run(session())

    job = Job.objects.get()
    assert submitted["id"] == str(job.pk) and submitted["status"] == "awaiting_approval"
    assert submitted["approval"] == str(job.approval_id)
    assert submitted["manifest_short"] == job.short_hash and submitted["mode"] == "dry_run"
    assert submitted["agent_id"] == "a-1" and submitted["submitted_by"] == "agent-owner"
    assert decided["status"] == "approved"
    assert queued["status"] == "queued"
    assert ended["status"] == "succeeded"
    assert [(step["id"], step["status"]) for step in ended["steps"]] == [
        ("tag", "succeeded"),
        ("notes", "succeeded"),
    ]


def test_manifest_errors_carry_the_api_codes(mcp_http, agent_key, settings):
    settings.AUTOMATION_COMMAND_ALLOWLIST = ["echo"]
    bad = {"name": "", "steps": [{"id": "a", "argv": "echo hi"}]}
    off_list = {"name": "x", "steps": [{"id": "a", "argv": ["rm", "-rf", "/"]}]}

    async def session():
        async with mcp_http.session(agent_key) as client:
            return [
                await client.call_tool("submit_manifest", {"manifest": bad}),
                await client.call_tool("submit_manifest", {"manifest": off_list}),
                await client.call_tool("job_status", {"job_id": "abcdef"}),
            ]

    invalid, refused, missing = asyncio.run(session())

    assert all(result.is_error for result in (invalid, refused, missing))
    assert data(invalid)["error"] == "invalid"
    assert set(data(invalid)["fields"]) == {"name", "steps/0/argv"}
    assert data(refused)["error"] == "command_not_allowed"
    assert data(missing)["error"] == "not_found"
    assert not Job.objects.exists()


def test_manifest_over_mcp_carries_a_callback_signed_with_the_token(mcp_http, agent_key, settings):
    settings.CALLBACK_ALLOWED_HOSTS = ["hooks.example.com"]
    settings.AUTOMATION_COMMAND_ALLOWLIST = ["echo", "true"]

    async def session():
        async with mcp_http.session(agent_key) as client:
            return await client.call_tool(
                "submit_manifest",
                {"manifest": RELEASE, "callback_url": "https://hooks.example.com/jobs"},
            )

    submitted = data(asyncio.run(session()))

    target = Job.objects.get(pk=submitted["id"]).callback_target
    assert target.url == "https://hooks.example.com/jobs"
    assert target.approval_id == Job.objects.get().approval_id
    assert agent_key.startswith(target.signer)
