"""HTTP benchmark of the Telegram webhook: how fast updates are stored and acknowledged.

Starts gunicorn on 127.0.0.1 against a throwaway database (PostgreSQL: created, migrated and
dropped here; or a SQLite file in a temporary directory), then POSTs updates carrying the right
secret token from concurrent client threads, each with its own keep-alive connection. Every update
is a button press with a fresh ``update_id``, so each one is a real insert plus its processing task
on the queue. Prints acknowledged updates per second, p50/p99 acknowledgement latency and the
ratios to the targets: at least 500 updates/s with p99 under 50 ms on 2 cores.

    .venv/bin/python bench/webhook_ingest.py [--updates 6000] [--clients 4] [--workers 2]
        [--threads 2] [--database postgres|sqlite]

The defaults fit 2 cores: one gunicorn worker per core, and as many clients as server threads
(more of either only adds contention for the same two cores).

PostgreSQL comes from BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres);
the task queue is Redis at BENCH_REDIS_URL when it answers, else the database (ORM broker).
"""

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from contextlib import nullcontext

import support

TARGET_UPDATES_PER_SECOND = 500
TARGET_P99_MS = 50
PATH = "/telegram/webhook/"


def update_body(update_id):
    return json.dumps(
        {
            "update_id": update_id,
            "callback_query": {
                "id": f"bench{update_id}",
                "from": {"id": 4242, "is_bot": False, "first_name": "Bench"},
                "message": {"message_id": 1, "chat": {"id": -1001, "type": "group"}, "date": 0},
                "chat_instance": "1",
                "data": "approve:" + uuid.uuid4().hex,
            },
        }
    ).encode()


def client(port, update_ids, latencies, failures):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {
        "Content-Type": "application/json",
        "X-Telegram-Bot-Api-Secret-Token": support.WEBHOOK_SECRET,
    }
    for update_id in update_ids:
        body = update_body(update_id)
        started = time.perf_counter()
        try:
            connection.request("POST", PATH, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            failures.append(update_id)
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            continue
        latencies.append(time.perf_counter() - started)
        if response.status != 200:
            failures.append(update_id)
    connection.close()


def drive(port, first_id, count, clients):
    """POST ``count`` updates from ``clients`` threads; returns (seconds, latencies, failures)."""
    ids = list(range(first_id, first_id + count))
    shares = [ids[index::clients] for index in range(clients)]
    latencies, failures = [], []
    threads = [
        threading.Thread(target=client, args=(port, share, latencies, failures)) for share in shares
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies, failures


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=6000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    options = parser.parse_args()

    run_id = uuid.uuid4().hex[:8]
    redis_url = support.REDIS_URL
    redis_url = redis_url if support.redis_answers(redis_url) else ""
    with tempfile.TemporaryDirectory(prefix="claimdesk-webhook-bench-") as var_dir:
        # SQLite needs no URL: the settings' default file lands in the temporary VAR_DIR.
        database = (
            support.ThrowawayPostgres(support.POSTGRES_URL, prefix="claimdesk_webhook_bench")
            if options.database == "postgres"
            else nullcontext("")
        )
        with database as database_url:
            env = support.benchmark_environment(
                database_url=database_url,
                redis_url=redis_url,
                var_dir=var_dir,
                cluster_name=f"webhook-bench-{run_id}",
            )
            support.migrate(env)
            port = support.free_port()
            gunicorn = support.start_gunicorn(
                env, port, workers=options.workers, threads=options.threads
            )
            try:
                drive(port, 1, min(500, options.updates), options.clients)  # warm-up
                seconds, latencies, failures = drive(
                    port, 1_000_000, options.updates, options.clients
                )
            finally:
                support.stop_gunicorn(gunicorn)
    report(options, redis_url, seconds, latencies, failures)
    return 1 if failures else 0


def report(options, redis_url, seconds, latencies, failures):
    rate = len(latencies) / seconds
    p50 = percentile(latencies, 0.50) * 1000
    p99 = percentile(latencies, 0.99) * 1000
    broker = "Redis" if redis_url else "ORM"
    print(
        f"webhook ingest: {options.database}, {broker} broker, {options.workers} gunicorn workers "
        f"x {options.threads} threads, {options.clients} clients, {os.cpu_count()} cores"
    )
    print(f"  acknowledged  {len(latencies)} updates in {seconds:.2f}s, {len(failures)} failed")
    print(
        f"  throughput    {rate:.0f} updates/s  (target >= {TARGET_UPDATES_PER_SECOND}: "
        f"{rate / TARGET_UPDATES_PER_SECOND:.2f}x)"
    )
    print(f"  latency p50   {p50:.1f} ms, mean {statistics.mean(latencies) * 1000:.1f} ms")
    print(
        f"  latency p99   {p99:.1f} ms  (target < {TARGET_P99_MS} ms: "
        f"{TARGET_P99_MS / p99:.2f}x headroom)"
    )


if __name__ == "__main__":
    sys.exit(main())
