"""Retries through a proxy that answers 503 before it lets requests through to the server."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from claimdesk_client import Client, ServerError

pytestmark = pytest.mark.django_db(transaction=True)


class FlakyProxy(ThreadingHTTPServer):
    """Answers 503 to the first ``failures`` requests, then forwards to ``upstream``."""

    def __init__(self, upstream, failures):
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        self.upstream = upstream
        self.failures = failures
        self.seen = []
        self.lock = threading.Lock()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class ProxyHandler(BaseHTTPRequestHandler):
    server: FlakyProxy

    def do_GET(self):
        self.relay()

    def do_POST(self):
        self.relay()

    def relay(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.seen.append((self.command, self.path, self.headers.get("Idempotency-Key")))
            fail = len(self.server.seen) <= self.server.failures
        if fail:
            self.answer(503, b'{"error": "unavailable", "detail": "try again"}')
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        upstream = requests.request(
            self.command, self.server.upstream + self.path, data=body, headers=headers, timeout=30
        )
        self.answer(upstream.status_code, upstream.content)

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        """Quiet: the test reads ``seen`` instead."""


@pytest.fixture
def flaky(server):
    proxies = []

    def start(failures):
        proxy = FlakyProxy(server, failures)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.shutdown()
        proxy.server_close()


def test_a_keyed_write_is_retried_after_503s_with_the_same_key(flaky, agent_token):
    proxy = flaky(failures=2)
    with Client(proxy.url, agent_token, agent_id="agent-7", backoff=0.01) as client:
        grant = client.claim("checkout", "payment-form")
    assert grant["outcome"] == "acquired" and grant["lease_token"]
    keys = {key for _, _, key in proxy.seen}
    assert len(proxy.seen) == 3 and len(keys) == 1 and None not in keys


def test_a_read_is_retried_after_503s(flaky, agent_token):
    proxy = flaky(failures=3)
    with Client(proxy.url, agent_token, retries=3, backoff=0.01) as client:
        assert list(client.claims()) == []
    assert len(proxy.seen) == 4


def test_a_write_without_a_key_is_not_sent_twice(flaky, agent_token):
    proxy = flaky(failures=1)
    with Client(proxy.url, agent_token, backoff=0.01) as client, pytest.raises(ServerError):
        client.claim("checkout", "payment-form", wait=5)
    assert len(proxy.seen) == 1


def test_too_many_503s_end_in_a_server_error(flaky, agent_token):
    proxy = flaky(failures=10)
    client = Client(proxy.url, agent_token, retries=2, backoff=0.01)
    with client, pytest.raises(ServerError) as failed:
        client.approval("0123456789ab")
    assert failed.value.status == 503 and len(proxy.seen) == 3


def test_a_server_that_is_not_there_is_a_connection_error(agent_token):
    client = Client("http://127.0.0.1:9", agent_token, retries=1, backoff=0.01)
    with client, pytest.raises(requests.ConnectionError):
        client.approval("0123456789ab")
