"""API tokens on the MCP server's HTTP transport: the same tokens, checked the same way, as the
REST API's (``api.authentication``).

A request without ``Authorization: Bearer <key>`` (or ``Token <key>``), or with a key that is
unknown or expired, is answered 401 with the API's error body before the SDK sees it; otherwise
the token's user and key prefix (an ``identity.Caller``) are left in the ASGI scope for the
tools.
"""

import json

from asgiref.sync import sync_to_async
from django.db import connections
from rest_framework.exceptions import AuthenticationFailed
from starlette.types import ASGIApp, Receive, Scope, Send

from api.authentication import TokenAuthentication
from backoffice.actors import Source

from .identity import SCOPE_CALLER, Caller

SCHEMES = {b"bearer", b"token"}


def _caller_for(key: bytes) -> Caller | None:
    """The active user of the token ``key`` and its key prefix, or None; run in a thread,
    whose database connections are closed afterwards."""
    try:
        user, token = TokenAuthentication().authenticate_credentials(key)
    except AuthenticationFailed:
        return None
    finally:
        connections.close_all()
    return Caller(user, Source.API, token.token_key) if user.is_active else None


def _key(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            scheme, _, key = value.strip().partition(b" ")
            if scheme.lower() in SCHEMES and key.strip():
                return key.strip()
    return None


async def _refuse(send: Send, detail: str) -> None:
    body = json.dumps({"error": "not_authenticated", "detail": detail, "fields": {}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"www-authenticate", b'Bearer realm="claimdesk"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class TokenAuthMiddleware:
    """ASGI middleware: every HTTP request needs a valid API token."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = _key(scope)
        if key is None:
            await _refuse(send, "Authentication credentials were not provided.")
            return
        caller = await sync_to_async(_caller_for, thread_sensitive=False)(key)
        if caller is None:
            await _refuse(send, "Invalid token.")
            return
        await self.app({**scope, SCOPE_CALLER: caller}, receive, send)
