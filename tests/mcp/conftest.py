"""An MCP server over real HTTP on a free port of 127.0.0.1, and a client session from the SDK."""

import socket
import threading
from dataclasses import dataclass

import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from model_bakery import baker

from api.tokens import create_token
from backoffice.actors import Actor, Source
from mcp_server import http
from tests.telegram.worker import wait_for


@dataclass
class McpHttp:
    url: str

    def session(self, key: str | None) -> Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        transport = streamable_http_client(
            self.url, http_client=httpx2.AsyncClient(headers=headers)
        )
        return Client(transport)


@pytest.fixture
def mcp_http(transactional_db):
    """The app ``manage.py mcp_server --transport http`` serves, on a uvicorn thread."""
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(http.app(), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=10, message="the MCP server to start")
        host, port = listening.getsockname()
        yield McpHttp(f"http://{host}:{port}{http.MCP_PATH}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listening.close()


@pytest.fixture
def agent(transactional_db):
    return baker.make("auth.User", username="agent-owner", is_active=True)


@pytest.fixture
def agent_key(agent):
    _token, key = create_token(agent, actor=Actor(source=Source.SYSTEM))
    return key
