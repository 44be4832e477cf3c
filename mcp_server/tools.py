"""The tools an agent calls over MCP: thin callers of the services and selectors of ``claims``
and ``automation``.

Every tool builds its ``Actor`` from the caller (``identity``), calls the same service the REST
API calls and answers with the representation every channel shows (``claims.representation``,
``automation.representation``).
A domain error becomes a tool error whose JSON carries the API's stable code (``conflict``,
``not_holder``, ``stale_fence``, ``forbidden``, ``not_found``, ``invalid``, ...) and its context,
in ``answer`` and nowhere else. Tools are plain functions the SDK runs in a worker thread; each
call closes its thread's database connections when it ends, so an idle server holds none.

A tool is added by writing a function and listing it in ``TOOLS``: ``build`` registers each with
its description (the docstring) and the JSON schema of its annotated parameters.
"""

import functools
import json
from collections.abc import Callable
from typing import Annotated, Any

from django.db import connections
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp_types import CallToolResult, TextContent
from pydantic import Field

from automation import selectors as job_selectors
from automation.representation import job_data
from backoffice.actors import Actor
from backoffice.cli import JSONEncoder
from backoffice.errors import DomainError, InvalidInput
from callbacks import services as callback_services
from claims import selectors, services, waiting
from claims.representation import approval_data, claim_data

from .identity import caller

INSTRUCTIONS = (
    "Claimdesk: claim a work item (a lease on story/todolist) before working on it, refresh it "
    "before it expires, release it when done. Ask a human with request_approval, then call "
    "await_decision with the id until the status is no longer pending. To run commands, "
    "submit_manifest, await_decision with its approval id, then job_status until the job ends. "
    "Errors are JSON with a "
    "stable 'error' code: conflict (someone else holds the lease), not_holder (wrong lease "
    "token), stale_fence (your lease was lost), forbidden, not_found, invalid."
)

Story = Annotated[str, Field(description="The story of the work item, e.g. 'release-42'.")]
Todolist = Annotated[str, Field(description="The todo list of the work item within the story.")]
ClaimId = Annotated[int, Field(description="The claim id from the claim tool's answer.")]
LeaseToken = Annotated[
    str, Field(description="The lease_token the claim tool returned when it granted the lease.")
]
FencingToken = Annotated[
    int | None,
    Field(description="Optional: the fencing_token of your grant; refused as stale_fence if lost."),
]
TtlSeconds = Annotated[
    int | None, Field(description="Lease length in seconds (default: the server's default TTL).")
]
AgentId = Annotated[str, Field(description="A label naming which agent of yours acts.")]
ApprovalId = Annotated[str, Field(description="The approval request id (or its first 6+ hex).")]
CallbackUrl = Annotated[
    str,
    Field(
        description="Optional, over HTTP only: an https URL on an allowed host that gets the "
        "new state POSTed, signed with your API token's callback secret."
    ),
]


def _json(data: Any) -> str:
    return json.dumps(data, cls=JSONEncoder, ensure_ascii=False)


def _result(data: dict[str, Any], *, is_error: bool = False) -> CallToolResult:
    """``data`` as the text an agent reads and the structured content a program reads."""
    text = _json(data)
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=json.loads(text),
        is_error=is_error,
    )


def answer(tool: Callable[..., dict[str, Any]]) -> Callable[..., CallToolResult]:
    """Run ``tool`` and answer with its JSON; a domain error becomes a tool error with its code.

    The one place domain errors are mapped for MCP. The database connections the call opened in
    this worker thread are closed afterwards, whatever happened.
    """

    @functools.wraps(tool)
    def call(*args: Any, **kwargs: Any) -> CallToolResult:
        try:
            return _result(tool(*args, **kwargs))
        except DomainError as error:
            return _result(error.as_dict(), is_error=True)
        finally:
            connections.close_all()

    return call


def _actor(ctx: Context, label: str = "") -> Actor:
    user, source, _signer = caller(ctx)
    return Actor(source=source, user=user, label=label)


def _signing_actor(ctx: Context, agent_id: str) -> dict[str, Any]:
    """Who acts, and whose API token signs the callbacks of what they ask for (``signer``)."""
    return {"actor": _actor(ctx, agent_id), "signer": caller(ctx).signer}


def claim(
    story: Story,
    todolist: Todolist,
    agent_id: AgentId,
    ctx: Context,
    ttl_seconds: TtlSeconds = None,
    lease_token: Annotated[
        str, Field(description="Your lease token, to extend a lease you already hold.")
    ] = "",
    wait: Annotated[
        float,
        Field(description="Seconds to wait in line for a busy work item (0: answer at once)."),
    ] = 0,
) -> dict[str, Any]:
    """Claim the lease on a work item. Answers the claim with its fencing_token and, once, the
    lease_token you need to refresh and release it (keep it secret). Error 'conflict' if someone
    else holds a live lease (its holder and expires_at are in the error)."""
    granted = services.claim(
        story=story,
        todolist=todolist,
        agent_id=agent_id,
        ttl_seconds=ttl_seconds,
        lease_token=lease_token,
        wait=wait,
        actor=_actor(ctx, agent_id),
    )
    return {
        **claim_data(granted.claim),
        "outcome": granted.outcome,
        "lease_token": granted.lease_token or None,
    }


def refresh(
    claim_id: ClaimId,
    lease_token: LeaseToken,
    ctx: Context,
    fencing_token: FencingToken = None,
    ttl_seconds: TtlSeconds = None,
) -> dict[str, Any]:
    """Extend your lease before it expires (expires_at and seconds_left are in the answer)."""
    refreshed = services.refresh(
        claim_id,
        lease_token=lease_token,
        fencing_token=fencing_token,
        ttl_seconds=ttl_seconds,
        actor=_actor(ctx),
    )
    return claim_data(refreshed)


def release(
    claim_id: ClaimId, lease_token: LeaseToken, ctx: Context, fencing_token: FencingToken = None
) -> dict[str, Any]:
    """Release your lease when the work is done, so the next claimer gets the work item."""
    released = services.release(
        claim_id, lease_token=lease_token, fencing_token=fencing_token, actor=_actor(ctx)
    )
    return claim_data(released)


def inspect(
    claim_id: Annotated[
        int | None, Field(description="A claim id; or give story and todolist.")
    ] = None,
    story: Annotated[str, Field(description="The story, with todolist, instead of an id.")] = "",
    todolist: Annotated[str, Field(description="The todo list, with story.")] = "",
) -> dict[str, Any]:
    """Read a claim: who holds it, until when (live, seconds_left), its fencing_token, who waits."""
    if claim_id is not None:
        return claim_data(selectors.get_claim(claim_id))
    if story and todolist:
        return claim_data(selectors.find_claim(story, todolist))
    raise InvalidInput({"claim_id": "give a claim id, or both story and todolist"})


def request_approval(
    kind: Annotated[str, Field(description="What is asked about: claim, command or manifest.")],
    text: Annotated[str, Field(description="The question, in words a human approver understands.")],
    ctx: Context,
    agent_id: AgentId = "",
    claim_id: Annotated[int | None, Field(description="The claim this request is about.")] = None,
    payload: Annotated[
        dict[str, Any] | None, Field(description="Machine-readable detail: the command, ...")
    ] = None,
    callback_url: CallbackUrl = "",
) -> dict[str, Any]:
    """Ask the human approvers; answers at once with the request's id and status ('pending').
    Then call await_decision with the id until the status is no longer pending."""
    approval = callback_services.request_approval(
        kind=kind,
        text=text,
        agent_id=agent_id,
        claim_id=claim_id,
        payload=payload,
        callback_url=callback_url,
        **_signing_actor(ctx, agent_id),
    )
    return approval_data(approval)


# Well under the tool-call timeouts of common MCP clients (often 60 s), so a wait never looks
# like a hung server; a longer wait is several calls.
AWAIT_DEFAULT_SECONDS = 25.0


def await_decision(
    approval_id: ApprovalId,
    timeout: Annotated[
        float,
        Field(
            description=f"Seconds to wait at most (0 to {waiting.MAX_WAIT_SECONDS:g}; default "
            f"{AWAIT_DEFAULT_SECONDS:g}).",
        ),
    ] = AWAIT_DEFAULT_SECONDS,
) -> dict[str, Any]:
    """Wait for a human's decision on an approval request, at most `timeout` seconds. Answers
    the request: if its status is still 'pending' (or 'postponed'), nobody decided yet: call
    again with the same id (also after a restart). 'approved' means go ahead; 'denied' or
    'expired' means do not."""
    return approval_data(waiting.wait_for_decision(approval_id, timeout))


def submit_manifest(
    manifest: Annotated[
        dict[str, Any],
        Field(
            description="The manifest (docs/automation.md): name, steps (each with id, argv, "
            "optional timeout, retries, allow_fail, env, cwd), optional work_item "
            "{story, todolist} and concurrency."
        ),
    ],
    ctx: Context,
    live: Annotated[
        bool,
        Field(description="Run the commands for real once approved (default: a dry run)."),
    ] = False,
    agent_id: AgentId = "",
    callback_url: CallbackUrl = "",
) -> dict[str, Any]:
    """Submit a manifest of commands to run once a human approves it; answers at once with the
    job (id, status 'awaiting_approval', mode), its 'approval' request id and 'manifest_short',
    the hash approvers see. Call await_decision with the approval id, then job_status with the
    job id until its status is succeeded, failed, cancelled or refused. An invalid manifest is
    error 'invalid' listing every problem; a command off the allowlist 'command_not_allowed'."""
    job = callback_services.submit_job(
        manifest_data=manifest,
        live=live,
        agent_id=agent_id,
        callback_url=callback_url,
        **_signing_actor(ctx, agent_id),
    )
    return job_data(job)


def job_status(
    job_id: Annotated[str, Field(description="The job id (or its first 6+ hex).")],
) -> dict[str, Any]:
    """Read a job: its status (awaiting_approval, queued, running, succeeded, failed,
    cancelled, refused), its approval request and each step's status, exit code and output."""
    return job_data(job_selectors.get_job(job_id))


# Every tool an agent sees, in the order listed.
TOOLS: list[Callable[..., dict[str, Any]]] = [
    claim,
    refresh,
    release,
    inspect,
    request_approval,
    await_decision,
    submit_manifest,
    job_status,
]


def approval_text(approval_id: str) -> str:
    """The text of an approval request, its status and its votes, as JSON."""
    try:
        return _json(approval_data(selectors.resolve_approval(approval_id)))
    except DomainError as error:
        raise ResourceError(_json(error.as_dict())) from None
    finally:
        connections.close_all()


def build() -> MCPServer:
    """The MCP server with every tool and the approval resource; transport-independent."""
    server = MCPServer("claimdesk", instructions=INSTRUCTIONS)
    for tool in TOOLS:
        server.add_tool(answer(tool), name=tool.__name__, description=tool.__doc__)
    server.resource(
        "claimdesk://approvals/{approval_id}",
        name="approval_request",
        description="An approval request: its text, status, votes and decision.",
        mime_type="application/json",
    )(approval_text)
    return server
