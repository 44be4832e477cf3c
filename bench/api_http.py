"""HTTP benchmark of the REST API: approvals and claim/release under concurrent clients.

Starts gunicorn on 127.0.0.1 against a throwaway PostgreSQL database (created, migrated and
dropped here), then drives it with concurrent clients, each a thread with its own
``requests.Session`` and token. Prints requests per second with p50/p99 latency and the ratio to
the target: at least 400 approvals/s with p99 under 50 ms.

    .venv/bin/python bench/api_http.py [--clients 8] [--approvals 3000] [--claims 1500]
        [--workers 4] [--threads 1]

The defaults are the best measured on a 2-core machine: 4 sync workers (one thread each) kept
both cores busy while requests waited on PostgreSQL, and beat 2x1, 3x1, 4x2 and 2x4 (gthread).

PostgreSQL comes from BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres);
the throttle's cache uses Redis at BENCH_REDIS_URL when it answers, else the database.
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid

import requests
import support

TARGET_RPS = 400
TARGET_P99_MS = 50


def environment(database_url, redis_url, run_id):
    env = support.benchmark_environment(
        database_url=database_url,
        redis_url=redis_url,
        var_dir=tempfile.mkdtemp(prefix="claimdesk-bench-"),
        cluster_name=f"bench-{run_id}",
        API_THROTTLE_RATE="100000000/min",
        CACHE_KEY_PREFIX=f"bench-{run_id}",
    )
    env.pop("TELEGRAM_APPROVER_CHAT_ID", None)
    return env


def prepare(env, clients, approvals):
    """Migrate, then make one approver token per client and the pending requests to decide."""
    support.migrate(env)
    os.environ.update(env)
    sys.path.insert(0, str(support.ROOT))
    import django

    django.setup()
    from django.contrib.auth.models import Group, User

    from api.tokens import create_token
    from audit.actors import system_actor
    from claims import services

    actor = system_actor("bench")
    group = Group.objects.get(name="Approvers")
    keys = []
    for number in range(clients):
        user = User.objects.create(username=f"bench-{number}", is_staff=True)
        user.groups.add(group)
        keys.append(create_token(user, actor=actor)[1])
    pending = [
        str(
            services.request_approval(
                kind="command", text=f"bench {n}", requested_by="bench", actor=actor
            ).pk
        )
        for n in range(approvals)
    ]
    from django.db import connections

    connections.close_all()
    return keys, pending


def drive(clients, work):
    """Run ``work(client_number, latencies)`` in one thread per client; return (seconds, ms)."""
    latencies = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    errors = []

    def run(number):
        barrier.wait()
        try:
            work(number, latencies[number])
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed, [ms for client in latencies for ms in client]


def timed(session, method, url, latencies, expect, **kwargs):
    started = time.perf_counter()
    response = session.request(method, url, timeout=30, **kwargs)
    latencies.append((time.perf_counter() - started) * 1000)
    if response.status_code != expect:
        raise RuntimeError(f"{method} {url}: {response.status_code} {response.text[:200]}")
    return response


def report(name, elapsed, latencies):
    rps = len(latencies) / elapsed
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"{name:<16} {len(latencies):>6} requests in {elapsed:6.2f}s  {rps:7.1f} req/s  "
        f"p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  "
        f"(x{rps / TARGET_RPS:.2f} of {TARGET_RPS}/s, p99 x{p99 / TARGET_P99_MS:.2f} of "
        f"{TARGET_P99_MS} ms)"
    )


def sessions(keys):
    out = []
    for key in keys:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {key}"
        out.append(session)
    return out


def measure(options, port, keys, pending, redis_url):
    """Warm the server up, then time the approvals and the claim+release pairs."""
    base = f"http://127.0.0.1:{port}/api/v1"
    clients = sessions(keys)
    print(
        f"gunicorn {options.workers} workers x {options.threads} threads, "
        f"{options.clients} clients, throttle cache: {'redis' if redis_url else 'database'}"
    )

    # Warm every worker's connections and imports before measuring.
    for session in clients:
        for _ in range(5):
            session.get(f"{base}/claims/?limit=1", timeout=30)

    share = [pending[n :: options.clients] for n in range(options.clients)]

    def approve(number, latencies):
        session = clients[number]
        for approval_id in share[number]:
            timed(session, "POST", f"{base}/approvals/{approval_id}/approve/", latencies, 200)

    report("approve", *drive(options.clients, approve))

    per_client = options.claims // options.clients

    def claim_and_release(number, latencies):
        session = clients[number]
        for n in range(per_client):
            body = {
                "story": f"B-{number}-{n}",
                "todolist": "bench",
                "agent_id": f"agent-{number}",
                "fingerprint": f"fp-{number}",
            }
            claimed = timed(session, "POST", f"{base}/claims/", latencies, 201, json=body)
            timed(
                session,
                "POST",
                f"{base}/claims/{claimed.json()['id']}/release/",
                latencies,
                200,
                json={"agent_id": f"agent-{number}"},
            )

    report("claim+release", *drive(options.clients, claim_and_release))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--approvals", type=int, default=3000)
    parser.add_argument("--claims", type=int, default=1500, help="claim+release pairs")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker")
    options = parser.parse_args()

    admin_url = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    redis_url = redis_url if support.redis_answers(redis_url) else ""
    run_id = uuid.uuid4().hex[:8]
    with support.ThrowawayPostgres(admin_url) as database_url:
        env = environment(database_url, redis_url, run_id)
        keys, pending = prepare(env, options.clients, options.approvals)
        port = support.free_port()
        process = support.start_gunicorn(
            env,
            port,
            workers=options.workers,
            threads=options.threads,
            worker_class="gthread" if options.threads > 1 else "sync",
        )
        try:
            measure(options, port, keys, pending, redis_url)
        finally:
            support.stop_gunicorn(process)


if __name__ == "__main__":
    main()
