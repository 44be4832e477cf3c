"""A real HTTP endpoint on 127.0.0.1 that receives callbacks the way docs/callbacks.md says to:
it checks the signature and the timestamp, and answers with the statuses it is told to."""

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_SECONDS = 300


def verified(secret: str, headers, body: bytes) -> bool:
    """The receiver snippet of docs/callbacks.md."""
    timestamp = headers.get("X-Claimdesk-Timestamp", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    given = headers.get("X-Claimdesk-Signature", "")
    return hmac.compare_digest("sha256=" + expected.hexdigest(), given)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool


@dataclass
class Receiver:
    """Answers each POST with the next of ``statuses`` (200 once they run out)."""

    secret: str = ""
    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks/claimdesk"

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ok = verified(receiver.secret, self.headers, body)
                receiver.received.append(Received(dict(self.headers), body, ok))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status if ok else 401)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
