import sys
from typing import Any

import uvicorn

from backoffice.cli import JsonCommand
from claims.cli import add_user_argument
from mcp_server import http, identity
from mcp_server.tools import build


class Command(JsonCommand):
    help = (
        "Serve the Model Context Protocol to agents. --transport stdio (the default) serves one "
        "agent on this machine over stdin/stdout, acting as --user (default: CLI_SERVICE_USER); "
        f"--transport http serves streamable HTTP at http://HOST:PORT{http.MCP_PATH}, every "
        "request authenticated with an API token (Authorization: Bearer <key>)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
        add_user_argument(parser)
        parser.add_argument("--host", default="127.0.0.1", help="HTTP: address to listen on.")
        parser.add_argument("--port", type=int, default=8765, help="HTTP: port to listen on.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["transport"] == "stdio":
            identity.serve_as(self.acting_user(options))
            build().run("stdio")
            return
        host, port = options["host"], options["port"]
        # Never on stdout, which is the protocol's own channel on stdio.
        print(f"MCP server at http://{host}:{port}{http.MCP_PATH}", file=sys.stderr, flush=True)
        uvicorn.run(http.app(host), host=host, port=port, log_level="warning")
