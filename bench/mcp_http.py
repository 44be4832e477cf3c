"""HTTP benchmark of the MCP server: tool calls per second over streamable HTTP.

Starts ``manage.py mcp_server --transport http`` (one process, uvicorn) on 127.0.0.1 against a
throwaway PostgreSQL database (created, migrated and dropped here) and drives it with MCP client
sessions of the ``mcp`` SDK, each with an API token of its own: first ``inspect`` calls (a read),
then ``claim`` + ``release`` pairs on work items of their own (two writes). Prints tool calls per
second with p50/p99 latency. There is no target yet: the figure is for comparison between runs.

    .venv/bin/python bench/mcp_http.py [--clients 8] [--seconds 10]

The clients are Python and run on the same machine, in one process with one event loop: on a
two-core machine they take a share of the CPU the server would otherwise have, so the figure is
a floor. PostgreSQL comes from BENCH_POSTGRES_URL (default
postgres://postgres@127.0.0.1:5432/postgres).
"""

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import httpx2
import support
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

START_SECONDS = 60


def prepare(env, clients):
    """Migrate, then make one agent and token per client, and a claim for them to inspect."""
    support.setup_django(env)
    from django.contrib.auth.models import User
    from django.db import connections

    from api.tokens import create_token
    from backoffice.actors import Actor, Source, system_actor
    from claims import services

    keys = []
    for number in range(clients):
        user = User.objects.create(username=f"bench-agent-{number}")
        keys.append(create_token(user, actor=system_actor("bench"))[1])
    owner = Actor(source=Source.API, user=User.objects.create(username="bench-owner"))
    claim = services.claim(story="bench", todolist="inspected", agent_id="bench", actor=owner)
    connections.close_all()
    return keys, claim.claim.pk


def start_server(env, port):
    process = subprocess.Popen(
        [sys.executable, "manage.py", "mcp_server", "--transport", "http", "--port", str(port)],
        cwd=support.ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        try:
            if httpx2.post(f"http://127.0.0.1:{port}/mcp", json={}).status_code == 401:
                return process
        except httpx2.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the MCP server did not start")


def session(url, key):
    headers = {"Authorization": f"Bearer {key}"}
    return Client(streamable_http_client(url, http_client=httpx2.AsyncClient(headers=headers)))


async def client_loop(url, key, number, seconds, operation, claim_id, latencies):
    """Call tools for ``seconds``; a tool error ends the run (the figure would be wrong)."""
    async with session(url, key) as client:
        deadline = time.monotonic() + seconds
        round_ = 0
        while time.monotonic() < deadline:
            if operation == "inspect":
                calls = [("inspect", {"claim_id": claim_id})]
            else:
                work = {"story": f"bench-{number}", "todolist": f"t-{round_}", "agent_id": "b"}
                calls = [("claim", work)]
            for name, arguments in calls:
                started = time.perf_counter()
                result = await client.call_tool(name, arguments)
                latencies.append(time.perf_counter() - started)
                if result.is_error:
                    raise SystemExit(f"{name} failed: {result.content[0].text}")
                if name == "claim":
                    granted = result.structured_content
                    started = time.perf_counter()
                    released = await client.call_tool(
                        "release",
                        {"claim_id": granted["id"], "lease_token": granted["lease_token"]},
                    )
                    latencies.append(time.perf_counter() - started)
                    if released.is_error:
                        raise SystemExit(f"release failed: {released.content[0].text}")
            round_ += 1


async def measure(url, keys, seconds, operation, claim_id):
    latencies: list[float] = []
    started = time.monotonic()
    await asyncio.gather(
        *(
            client_loop(url, key, number, seconds, operation, claim_id, latencies)
            for number, key in enumerate(keys)
        )
    )
    elapsed = time.monotonic() - started
    cuts = statistics.quantiles(latencies, n=100)
    rate = len(latencies) / elapsed
    label = "inspect" if operation == "inspect" else "claim/release"
    print(
        f"{label:<14} {len(latencies):>6} tool calls in {elapsed:5.2f}s  {rate:7.1f} calls/s  "
        f"p50 {cuts[49] * 1000:6.1f} ms  p99 {cuts[98] * 1000:6.1f} ms"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=10, help="length of each timed run")
    options = parser.parse_args()

    run_id = uuid.uuid4().hex[:8]
    with support.ThrowawayPostgres(support.POSTGRES_URL) as database_url:
        env = support.benchmark_environment(
            database_url=database_url,
            redis_url="",
            var_dir=tempfile.mkdtemp(prefix="claimdesk-bench-"),
            cluster_name=f"bench-{run_id}",
        )
        env.pop("TELEGRAM_APPROVER_CHAT_ID", None)
        keys, claim_id = prepare(env, options.clients)
        port = support.free_port()
        process = start_server(env, port)
        url = f"http://127.0.0.1:{port}/mcp"
        print(f"mcp_server --transport http (1 process), {options.clients} MCP client sessions")
        try:
            for operation in ("inspect", "claim"):
                asyncio.run(measure(url, keys, options.seconds, operation, claim_id))
        finally:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
