"""Where an approval's time goes: CPU per API request, layer by layer, worker and database apart.

    .venv/bin/python bench/request_cost.py [--seconds 8] [--anchor ../shared/bench-anchor]

One sync gunicorn worker serves a throwaway PostgreSQL database; two wrk clients send each of
these requests for ``--seconds``, each adding layers to the one before it:

- an unknown path, answered 404 without a token: gunicorn, Django and the middleware;
- GET of a decided request with a token: authentication, throttle, permission check, the read
  of the request with its votes, the serializer and the renderer;
- approving that request again: the decision's transaction and lock, an answer that says
  nothing changed;
- approving pending requests: the whole decision (vote, audit event, Telegram edit, callback,
  delivery task).

For each it prints the CPU time the worker and the PostgreSQL server spent per request, read from
``/proc`` before and after, so waiting is not counted. With ``--anchor``, the smallest honest
approve (``side_by_side.sh``'s anchor: lock, update, audit row, outbox row, no authentication or
middleware) is measured the same way, in the virtualenv ``side_by_side.sh`` makes for it.
Absolute figures move with the machine's load; the lines of one run compare.
"""

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import api_http
import psycopg
import support

SCRIPT = Path(__file__).with_suffix(".lua")
CLIENTS = 2
ANCHOR_VENV = Path(os.environ.get("ANCHOR_VENV", "/tmp/claimdesk-anchor-venv"))
ANCHOR_IDS = 200001, 260000


def cpu_seconds(pids):
    """User and system CPU seconds the processes ``pids`` have used so far."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def processes(pattern):
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def workers_of(process):
    """gunicorn's worker processes: its children."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text()
    return [int(pid) for pid in children.split()]


class Cost:
    """CPU milliseconds per request of the web worker and of PostgreSQL over one wrk run."""

    def __init__(self, workers, run):
        database = processes("postgres")
        worker_before, database_before = cpu_seconds(workers), cpu_seconds(database)
        self.requests, self.seconds = run()
        database = set(database) | set(processes("postgres"))
        self.worker_ms = 1000 * (cpu_seconds(workers) - worker_before) / self.requests
        self.database_ms = 1000 * (cpu_seconds(database) - database_before) / self.requests

    def line(self, label, previous=None):
        total = self.worker_ms + self.database_ms
        added = "" if previous is None else f"  (+{total - previous:5.2f})"
        return (
            f"{label:<38} {self.requests / self.seconds:7.1f} req/s  worker {self.worker_ms:5.2f}"
            f"  database {self.database_ms:5.2f}  sum {total:5.2f} ms{added}"
        )


def run_script(base_url, keys, seconds, *, method, path, expect, body="", auth=True):
    """One wrk run of ``request_cost.lua``; returns (answers, seconds)."""
    completed = subprocess.run(
        [
            "wrk",
            f"--threads={len(keys)}",
            f"--connections={len(keys)}",
            f"--duration={seconds}s",
            f"--script={SCRIPT}",
            base_url,
        ],
        env={
            **os.environ,
            "BENCH_TOKENS": ",".join(keys),
            "METHOD": method,
            "BENCH_PATH": path,
            "BENCH_BODY": body,
            "BENCH_AUTH": "1" if auth else "0",
            "BENCH_EXPECT": str(expect),
        },
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    if result["failed"]:
        raise SystemExit(f"{result['failed']} answers to {method} {path} were not {expect}")
    return result["requests"], result["seconds"]


def project_costs(seconds):
    """The four layers of the project's approve, on a database of their own."""
    run_id = uuid.uuid4().hex[:8]
    admin_url = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    redis_url = support.REDIS_URL if support.redis_answers(support.REDIS_URL) else ""
    with support.ThrowawayPostgres(admin_url) as database_url:
        env = api_http.environment(database_url, redis_url, run_id)
        keys, pending = api_http.prepare(env, CLIENTS, CLIENTS * seconds * 150)
        decided = _approve_one(pending.pop())
        port = support.free_port()
        server = support.start_gunicorn(env, port, workers=1, threads=1, worker_class="sync")
        base_url = f"http://127.0.0.1:{port}"
        try:
            workers = workers_of(server)
            # Warm up: the first requests load code and the user's permissions.
            run_script(
                base_url, keys, 1, method="GET", path=f"/api/v1/approvals/{decided}/", expect=200
            )
            layers = [
                (
                    "404 without a token",
                    dict(method="GET", path="/api/v1/none/", expect=404, auth=False),
                ),
                (
                    "GET a decided request",
                    dict(method="GET", path=f"/api/v1/approvals/{decided}/", expect=200),
                ),
                (
                    "approve it again (no change)",
                    dict(
                        method="POST",
                        path=f"/api/v1/approvals/{decided}/approve/",
                        body="{}",
                        expect=200,
                    ),
                ),
            ]
            costs = [
                (
                    label,
                    Cost(
                        workers,
                        lambda request=request: run_script(base_url, keys, seconds, **request),
                    ),
                )
                for label, request in layers
            ]
            with tempfile.NamedTemporaryFile("w", suffix=".txt") as ids:
                ids.write("\n".join(pending) + "\n")
                ids.flush()

                def approve():
                    result = api_http.run_wrk(base_url, keys, seconds, "approve", ids.name)
                    if result["repeated"]:
                        raise SystemExit(
                            "every pending request was decided; run for fewer --seconds"
                        )
                    return result["requests"], result["seconds"]

                costs.append(("approve a pending request", Cost(workers, approve)))
        finally:
            support.stop_gunicorn(server)
            api_http.drop_queued_tasks()
    return costs


def _approve_one(approval_id):
    from django.contrib.auth.models import User
    from django.db import connections

    from backoffice.actors import Actor, Source
    from claims import services

    approver = Actor(source=Source.API, user=User.objects.get(username="bench-0"))
    services.decide(approval_id, "approve", actor=approver)
    connections.close_all()
    return approval_id


def anchor_cost(anchor_dir, seconds):
    """The anchor's approve over HTTP, one worker, the same two clients."""
    if not (ANCHOR_VENV / "bin" / "gunicorn").exists():
        raise SystemExit(f"no anchor virtualenv at {ANCHOR_VENV}: run side_by_side.sh once first")
    admin_url = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    with support.ThrowawayPostgres(admin_url, prefix="anchor_bench") as database_url:
        name = database_url.rsplit("/", 1)[1]
        env = {**os.environ, "ANCHOR_DB": name, "ANCHOR_PG_PORT": "5432"}
        python = str(ANCHOR_VENV / "bin" / "python")
        subprocess.run(
            [python, "manage.py", "migrate", "--run-syncdb", "-v0"],
            cwd=anchor_dir,
            env=env,
            check=True,
        )
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute(
                "INSERT INTO claims_claim (id, state, version, updated_at) "
                "SELECT g, 'pending', 0, now() FROM generate_series(%s, %s) g",
                ANCHOR_IDS,
            )
        port = support.free_port()
        server = subprocess.Popen(
            [
                str(ANCHOR_VENV / "bin" / "gunicorn"),
                "wsgi:application",
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                "1",
                "--log-level",
                "warning",
            ],
            cwd=anchor_dir,
            env=env,
            start_new_session=True,
        )
        try:
            support.wait_for_port(server, port)
            workers = workers_of(server)

            def approve():
                completed = subprocess.run(
                    [
                        "wrk",
                        f"-t{CLIENTS}",
                        f"-c{CLIENTS}",
                        f"-d{seconds}s",
                        "-s",
                        "approve.lua",
                        f"http://127.0.0.1:{port}",
                    ],
                    cwd=anchor_dir,
                    env={**env, "ANCHOR_START": str(ANCHOR_IDS[0]), "ANCHOR_THREADS": str(CLIENTS)},
                    capture_output=True,
                    text=True,
                    check=True,
                )
                line = next(
                    line for line in completed.stdout.splitlines() if line.startswith("RESULT ")
                )
                result = json.loads(line.removeprefix("RESULT "))
                return result["requests"], result["seconds"]

            return Cost(workers, approve)
        finally:
            support.stop_gunicorn(server)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="length of each wrk run (8)")
    parser.add_argument("--anchor", type=Path, help="the bench-anchor directory, to measure it too")
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    print(f"CPU per request, one sync gunicorn worker, {CLIENTS} wrk clients")
    if options.anchor:
        print(anchor_cost(options.anchor.resolve(), options.seconds).line("anchor: approve"))
    previous = None
    for label, cost in project_costs(options.seconds):
        print(cost.line(label, previous))
        previous = cost.worker_ms + cost.database_ms


if __name__ == "__main__":
    main()
