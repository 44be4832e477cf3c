"""Who calls a tool: the API token's user over HTTP, the ``--user`` of the process over stdio.

Over HTTP, ``auth.TokenAuthMiddleware`` checks the token of every request before the SDK sees it
and leaves the user in the ASGI scope, where the tool finds it through its request. Over stdio
there is no request: the process serves the one user it was started as (``serve_as``), like the
other commands.
"""

from typing import NamedTuple

from django.contrib.auth.models import User
from mcp.server.mcpserver import Context

from backoffice.actors import Source
from backoffice.errors import NotPermitted

SCOPE_CALLER = "claimdesk.caller"


class Caller(NamedTuple):
    """The user, the channel, and the key prefix of the API token that signs callbacks (none
    over stdio)."""

    user: User
    source: str
    signer: str = ""


_local_user: list[User] = []


def serve_as(user: User) -> None:
    """Make ``user`` the caller of every tool this process runs without an HTTP request."""
    _local_user[:] = [user]


def caller(ctx: Context) -> Caller:
    """Who is behind this tool call: the token's over HTTP, the process's over stdio."""
    request = ctx.request_context.request
    scope = getattr(request, "scope", None)
    if scope is not None:
        found = scope.get(SCOPE_CALLER)
        if found is None:
            raise NotPermitted("This request carries no valid API token.")
        return found
    if not _local_user:
        raise NotPermitted("This server was started without a user to act as.")
    return Caller(_local_user[0], Source.CLI)
