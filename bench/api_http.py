"""HTTP benchmark of the REST API: approvals and claim/release under concurrent clients.

Starts gunicorn on 127.0.0.1 against a throwaway PostgreSQL database (created, migrated and
dropped here) and drives it with wrk: each wrk thread is one client with one connection and a
token of its own (see api_http.lua). Prints requests per second with p50/p99 latency and the
ratio to the target: at least 400 approvals/s with p99 under 50 ms.

    .venv/bin/python bench/api_http.py [--clients 8] [--seconds 10] [--workers 3]

wrk comes from Debian (``apt-get install -y wrk``). A load generator written in C leaves the
two cores of the benchmark machine to the server: eight Python clients in threads took a fifth of
the CPU on their own. Each approval decides a different pending request; a run that would decide
one twice (every request already decided) fails and asks for a shorter run. Three sync workers
kept both cores busy and measured steadier and faster than four or five.

PostgreSQL comes from BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres);
the throttle counts in Redis at BENCH_REDIS_URL when it answers, else in the database.
"""

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import requests
import support

TARGET_RPS = 400
TARGET_P99_MS = 50
# Pending requests made per client and per second of the run, above the fastest rate seen.
APPROVALS_PER_CLIENT_SECOND = 100
SCRIPT = Path(__file__).with_suffix(".lua")
BENCH_CHAT_ID = "-1001"


def environment(database_url, redis_url, run_id):
    env = support.benchmark_environment(
        database_url=database_url,
        redis_url=redis_url,
        var_dir=tempfile.mkdtemp(prefix="claimdesk-bench-"),
        cluster_name=f"bench-{run_id}",
        API_THROTTLE_RATE="100000000/min",
        CACHE_KEY_PREFIX=f"bench-{run_id}",
    )
    # Requests are announced in an approver chat, so an approval edits that message: an outbox
    # row and a delivery task, as in production (nothing delivers them here).
    env["TELEGRAM_APPROVER_CHAT_ID"] = BENCH_CHAT_ID
    return env


def prepare(env, clients, approvals):
    """Migrate, then make one approver token per client and the pending requests to decide."""
    support.setup_django(env)
    from django.contrib.auth.models import Group, User
    from django.db import connections

    from api.tokens import create_token
    from backoffice.actors import Actor, Source, system_actor
    from claims import services
    from telegram_bridge import outbox
    from telegram_bridge.models import OutboundMessage

    actor = system_actor("bench")
    group = Group.objects.get(name="Approvers")
    keys = []
    for number in range(clients):
        user = User.objects.create(username=f"bench-{number}", is_staff=True)
        user.groups.add(group)
        keys.append(create_token(user, actor=actor)[1])
    # A request belongs to a user; the clients approve what this one asked.
    requester = Actor(source=Source.API, user=User.objects.create(username="bench-requester"))
    pending = [
        str(
            services.request_approval(
                kind="command", text=f"bench {n}", agent_id="bench", actor=requester
            ).pk
        )
        for n in range(approvals)
    ]
    # The announcements went out: each approval queues an edit of a sent message.
    outbox.messages().update(status=OutboundMessage.Status.SENT, telegram_message_id=1)
    connections.close_all()
    return keys, pending


def drop_queued_tasks():
    """The delivery tasks the approvals queued; no worker ran to take them."""
    from django_q.brokers import get_broker

    get_broker().delete_queue()


def run_wrk(base_url, keys, seconds, *script_args):
    """One wrk run, a thread and a connection per token; returns the script's RESULT."""
    completed = subprocess.run(
        [
            "wrk",
            f"--threads={len(keys)}",
            f"--connections={len(keys)}",
            f"--duration={seconds}s",
            "--timeout=10s",
            f"--script={SCRIPT}",
            base_url,
            "--",
            *script_args,
        ],
        env={**os.environ, "BENCH_TOKENS": ",".join(keys)},
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    if result["failed"] or result["socket_errors"]:
        raise SystemExit(
            f"{result['failed']} unexpected answers and {result['socket_errors']} socket errors, "
            f"first: {result['failure']}"
        )
    return result


def report(name, result):
    rps = result["requests"] / result["seconds"]
    print(
        f"{name:<14} {result['requests']:>6} requests in {result['seconds']:5.2f}s  "
        f"{rps:7.1f} req/s  p50 {result['p50_ms']:5.1f} ms  p99 {result['p99_ms']:5.1f} ms  "
        f"(x{rps / TARGET_RPS:.2f} of {TARGET_RPS}/s, "
        f"p99 x{result['p99_ms'] / TARGET_P99_MS:.2f} of {TARGET_P99_MS} ms)"
    )


def measure(options, port, keys, pending):
    """Warm every worker up, then time the approvals and the claim+release pairs."""
    base_url = f"http://127.0.0.1:{port}"
    for key in keys:
        for _ in range(5):
            requests.get(
                f"{base_url}/api/v1/claims/?limit=1",
                headers={"Authorization": f"Token {key}"},
                timeout=30,
            ).raise_for_status()

    with tempfile.NamedTemporaryFile("w", suffix=".txt") as ids:
        ids.write("\n".join(pending) + "\n")
        ids.flush()
        approvals = run_wrk(base_url, keys, options.seconds, "approve", ids.name)
    if approvals["repeated"]:
        raise SystemExit(
            f"every pending request was decided before the run ended ({len(pending)}); "
            "run for fewer --seconds"
        )
    report("approve", approvals)
    report("claim+release", run_wrk(base_url, keys, options.seconds, "claim"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=10, help="length of each timed run")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")

    redis_url = support.REDIS_URL
    redis_url = redis_url if support.redis_answers(redis_url) else ""
    run_id = uuid.uuid4().hex[:8]
    with support.ThrowawayPostgres(support.POSTGRES_URL) as database_url:
        env = environment(database_url, redis_url, run_id)
        approvals = options.clients * options.seconds * APPROVALS_PER_CLIENT_SECOND
        keys, pending = prepare(env, options.clients, approvals)
        port = support.free_port()
        process = support.start_gunicorn(
            env, port, workers=options.workers, threads=1, worker_class="sync"
        )
        print(
            f"gunicorn {options.workers} sync workers, {options.clients} clients (wrk), "
            f"throttle counts in {'Redis' if redis_url else 'the database'}"
        )
        try:
            measure(options, port, keys, pending)
        finally:
            support.stop_gunicorn(process)
            drop_queued_tasks()


if __name__ == "__main__":
    main()
