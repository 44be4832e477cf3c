"""HTTP plumbing of the fake Bot API: the Bot API routes, the control routes, start and stop.

``/bot<token>/<method>`` speaks the Bot API wire format (parameters from the query string and a
JSON, form-urlencoded or multipart/form-data body, sent whole or chunked; ``{"ok": …}`` out, a
``Retry-After`` header on 429). ``/_control/<action>`` takes a JSON object of
keyword arguments for the ``FakeState`` method of that name and answers
``{"ok": true, "result": …}``.

Every request runs on its own thread, so a hung answer never blocks the others; ``stop()`` wakes
hung answers and long polls and closes open connections instead of waiting for them.
"""

import contextlib
import json
import secrets
import socket
import struct
import threading
from email.parser import BytesParser
from email.policy import HTTP
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

from .control import FakeTelegramControl
from .methods import METHODS, Described
from .state import CONTROL_ACTIONS, ApiError, FakeState, FloodLimits
from .webhook import WebhookSender

DEFAULT_FLOOD_LIMITS = FloodLimits()
NOT_FOUND = ApiError(404, "Not Found")
UNAUTHORIZED = ApiError(401, "Unauthorized")


def random_token():
    """A token shaped like Telegram's, different for every server."""
    return f"{secrets.randbelow(9 * 10**9) + 10**9}:{secrets.token_urlsafe(26)}"


class FakeTelegramServer:
    """A Bot API server on ``host:port`` (0: any free port); ``base_url`` is where to point bots."""

    def __init__(
        self,
        host="127.0.0.1",
        port=0,
        token=None,
        *,
        flood=DEFAULT_FLOOD_LIMITS,
        chats=None,
        webhook_retry_delay=0.1,
        webhook_retry_max=5.0,
        webhook_timeout=5.0,
    ):
        self.host = host
        self.port = port
        self.token = token or random_token()
        self.state = FakeState(token=self.token, flood=flood, chats=chats)
        self._webhook = WebhookSender(
            self.state,
            retry_delay=webhook_retry_delay,
            retry_max=webhook_retry_max,
            timeout=webhook_timeout,
        )
        self._httpd = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self):
        return f"http://{self.host}:{self.port}"

    @cached_property
    def control(self):
        """A control client for this server (its port is known once started)."""
        return FakeTelegramControl(self.base_url)

    def start(self):
        self._httpd = _HTTPServer((self.host, self.port), _Handler, self.state)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="fake-telegram",
            daemon=True,
        )
        self._thread.start()
        self._webhook.start()
        return self

    def stop(self):
        self.state.stop()
        if self._httpd is not None and self._thread is not None:
            self._httpd.shutdown()
            self._httpd.close_connections()
            self._httpd.server_close()
            self._thread.join(timeout=5)
        if "control" in self.__dict__:
            self.control.close()
        if self._webhook.is_alive():
            self._webhook.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


class _HTTPServer(ThreadingHTTPServer):
    state: FakeState

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address, handler, state):
        super().__init__(address, handler)
        self.state = state
        self._connections = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request, client_address):
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self):
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request, client_address):
        """Clients that give up (a timeout, a reset) are normal here; nothing to report."""


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer

    protocol_version = "HTTP/1.1"
    server_version = "FakeTelegramBotAPI/1.0"
    # Idle keep-alive connections are closed after this many seconds.
    timeout = 30

    def log_message(self, format, *args):
        """Silent: request lines carry the bot token."""

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def _dispatch(self):
        path, _, query = self.path.partition("?")
        body = self._read_body()
        if path.startswith("/_control/"):
            self._control(path.removeprefix("/_control/"), body)
            return
        state = self.server.state
        prefix, _, method = path.removeprefix("/bot").partition("/")
        if not path.startswith("/bot") or not method or "/" in method:
            self._send_error(NOT_FOUND)
            return
        if prefix != state.token:
            self._send_error(UNAUTHORIZED)
            return
        handler = METHODS.get(method.lower())
        with state.cond:
            state.stats_counters.calls[method] += 1
            fault = state.take_fault(method)
        if fault is not None and fault.kind == "reset":
            self._reset()
            return
        if fault is not None and fault.kind == "hang":
            state.stopped.wait(fault.seconds)
            if state.stopped.is_set():
                self.close_connection = True
                return
        elif fault is not None:
            self._send_error(fault.error())
            return
        if handler is None:
            self._send_error(NOT_FOUND)
            return
        try:
            params = {**dict(parse_qsl(query)), **self._body_params(body)}
            with state.cond:
                result = handler(state, params)
        except ApiError as error:
            self._send_error(error)
            return
        if isinstance(result, Described):
            answer = {"ok": True, "result": result.result, "description": result.description}
        else:
            answer = {"ok": True, "result": result}
        self._send_json(200, answer)

    def _read_body(self):
        """The request body, whole (``Content-Length``) or chunked (``Transfer-Encoding``)."""
        if "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                # Trailers, if any, end with an empty line.
                while self.rfile.readline().strip():
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _body_params(self, body):
        if not body:
            return {}
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type == "application/json":
            try:
                params = json.loads(body)
            except ValueError:
                raise ApiError(400, "Bad Request: can't parse JSON request body") from None
            if not isinstance(params, dict):
                raise ApiError(400, "Bad Request: JSON request body must be an object")
            return params
        if content_type in ("application/x-www-form-urlencoded", ""):
            return dict(parse_qsl(body.decode(errors="replace")))
        if content_type == "multipart/form-data":
            return self._multipart_params(body)
        raise ApiError(400, f"Bad Request: unsupported content type {content_type}")

    def _multipart_params(self, body):
        """Each form field by name: text as a string, a file's content as bytes."""
        head = f"Content-Type: {self.headers.get('Content-Type')}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + body)
        if not message.is_multipart():
            raise ApiError(400, "Bad Request: can't parse multipart/form-data body")
        params = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                params[name] = part.get_content()
        return params

    def _control(self, action, body):
        if action not in CONTROL_ACTIONS:
            body = {"ok": False, "description": f"unknown control action {action}"}
            self._send_json(404, body, counted=False)
            return
        try:
            kwargs = json.loads(body) if body else {}
            result = getattr(self.server.state, action)(**kwargs)
        except (TypeError, ValueError, KeyError) as exc:
            self._send_json(400, {"ok": False, "description": str(exc)}, counted=False)
            return
        self._send_json(200, {"ok": True, "result": result}, counted=False)

    def _send_error(self, error):
        headers = {}
        if error.retry_after is not None:
            headers["Retry-After"] = str(error.retry_after)
        if error.error_code in (502, 504):
            # What the gateway in front of Telegram answers: an HTML page, not JSON.
            page = f"<html><body><h1>{error.description}</h1></body></html>".encode()
            self._send(error.error_code, page, "text/html", headers)
            return
        self._send_json(error.error_code, error.as_body(), headers)

    def _send_json(self, status, body, headers=None, *, counted=True):
        payload = json.dumps(body).encode()
        self._send(status, payload, "application/json", headers or {}, counted=counted)

    def _send(self, status, payload, content_type, headers, *, counted=True):
        """Answer; ``counted`` answers (the Bot API's, not the control API's) go in the stats."""
        if counted:
            with self.server.state.cond:
                self.server.state.stats_counters.responses[status] += 1
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            # The client gave up (e.g. its read timeout passed while the answer hung).
            self.close_connection = True

    def _reset(self):
        """Drop the connection with a TCP RST and no answer at all."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()
        self.connection.close()
        self.close_connection = True
