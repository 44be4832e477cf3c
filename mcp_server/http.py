"""The MCP server as an ASGI app on streamable HTTP, behind the API-token check.

Stateless and answering in JSON: any process serves any request, so the HTTP server scales like
the web process, and nothing but the token ties a call to a caller.
"""

from starlette.types import ASGIApp

from .auth import TokenAuthMiddleware
from .tools import build

MCP_PATH = "/mcp"


def app(host: str = "127.0.0.1") -> ASGIApp:
    """The app for a server listening on ``host`` (on localhost, the SDK also checks the Host
    header against DNS rebinding)."""
    return TokenAuthMiddleware(
        build().streamable_http_app(
            streamable_http_path=MCP_PATH, stateless_http=True, json_response=True, host=host
        )
    )
