"""Who calls a tool: the API token's user over HTTP, the ``--user`` of the process over stdio.

Over HTTP, ``auth.TokenAuthMiddleware`` checks the token of every request before the SDK sees it
and leaves the user in the ASGI scope, where the tool finds it through its request. Over stdio
there is no request: the process serves the one user it was started as (``serve_as``), like the
other commands.
"""

from django.contrib.auth.models import User
from mcp.server.mcpserver import Context

from backoffice.actors import Source
from backoffice.errors import NotPermitted

SCOPE_USER = "claimdesk.user"

_local_user: list[User] = []


def serve_as(user: User) -> None:
    """Make ``user`` the caller of every tool this process runs without an HTTP request."""
    _local_user[:] = [user]


def caller(ctx: Context) -> tuple[User, str]:
    """The user behind this tool call and the channel (API over HTTP, CLI over stdio)."""
    request = ctx.request_context.request
    scope = getattr(request, "scope", None)
    if scope is not None:
        user = scope.get(SCOPE_USER)
        if user is None:
            raise NotPermitted("This request carries no valid API token.")
        return user, Source.API
    if not _local_user:
        raise NotPermitted("This server was started without a user to act as.")
    return _local_user[0], Source.CLI
