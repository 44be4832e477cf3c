"""Where an approval's time goes: CPU per API request, layer by layer, worker and database apart.

    .venv/bin/python bench/request_cost.py [--seconds 5] [--rounds 3] [--anchor DIR]

One sync gunicorn worker serves a throwaway PostgreSQL database; two wrk clients send each of
these requests for ``--seconds``, each adding layers to the one before it:

- the liveness probe, without a token: gunicorn, Django and the middleware;
- GET of a decided request with a token: authentication, throttle, permission check, the read
  of the request with its votes, the serializer and the renderer;
- approving that request again: the decision's transaction and lock, an answer that says
  nothing changed;
- approving pending requests: the whole decision (vote, audit event, Telegram edit, callback,
  delivery task).

For each it prints the CPU time the worker and the PostgreSQL server spent per request, read from
``/proc`` before and after, so time spent waiting is not counted. With ``--anchor`` (the
bench-anchor directory), the smallest honest approve (lock, update, audit row, outbox row; no
authentication or middleware) is measured the same way in every round, in the virtualenv
``side_by_side.sh`` makes for it, and each round prints the ratio of the two approves. Rounds
interleave the runs, since CPU time per request on a shared machine moves from minute to minute;
the medians and the per-round ratios are the figures to compare.
"""

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import uuid
from dataclasses import astuple, dataclass
from functools import partial
from pathlib import Path

import api_http
import psycopg
import support

SCRIPT = Path(__file__).with_suffix(".lua")
CLIENTS = 2
ANCHOR_VENV = Path(os.environ.get("ANCHOR_VENV", "/tmp/claimdesk-anchor-venv"))
ANCHOR_IDS = 200001, 260000


def cpu_seconds(pids):
    """User and system CPU seconds each of the processes ``pids`` has used so far."""
    used = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


def cpu_used(before, after):
    """CPU seconds used between two ``cpu_seconds``: by the processes alive at the end, less what
    those alive at the start had used (a process that ended in between is not counted)."""
    return sum(seconds - before.get(pid, 0) for pid, seconds in after.items())


def processes(pattern):
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def workers_of(process):
    """gunicorn's worker processes: its children."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text()
    return [int(pid) for pid in children.split()]


@dataclass(frozen=True)
class Cost:
    """CPU milliseconds per request of the web worker and of PostgreSQL over one wrk run."""

    requests: float
    seconds: float
    worker_ms: float
    database_ms: float

    @classmethod
    def of(cls, workers, run):
        """What ``run`` (which returns its answers and seconds) cost the ``workers``."""
        worker_before = cpu_seconds(workers)
        database_before = cpu_seconds(processes("postgres"))
        requests, seconds = run()
        worker = cpu_used(worker_before, cpu_seconds(workers))
        database = cpu_used(database_before, cpu_seconds(processes("postgres")))
        return cls(requests, seconds, 1000 * worker / requests, 1000 * database / requests)

    @classmethod
    def median(cls, costs):
        """Every figure the median of ``costs``'."""
        return cls(
            *(statistics.median(figures) for figures in zip(*map(astuple, costs), strict=True))
        )

    @property
    def sum_ms(self):
        return self.worker_ms + self.database_ms

    def line(self, label):
        return (
            f"{label:<30} {self.requests / self.seconds:7.1f} req/s  worker {self.worker_ms:5.2f}"
            f"  database {self.database_ms:5.2f}  sum {self.sum_ms:5.2f} ms"
        )


def wrk(url, script, seconds, *, env, cwd=None):
    """One wrk run, a thread and a connection per client; returns its script's RESULT line."""
    completed = subprocess.run(
        [
            "wrk",
            f"--threads={CLIENTS}",
            f"--connections={CLIENTS}",
            f"--duration={seconds}s",
            f"--script={script}",
            url,
        ],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def run_script(base_url, keys, seconds, *, method, path, expect, body="", auth=True):
    """One wrk run of ``request_cost.lua``; returns (answers, seconds)."""
    result = wrk(
        base_url,
        SCRIPT,
        seconds,
        env={
            "BENCH_TOKENS": ",".join(keys),
            "METHOD": method,
            "BENCH_PATH": path,
            "BENCH_BODY": body,
            "BENCH_AUTH": "1" if auth else "0",
            "BENCH_EXPECT": str(expect),
        },
    )
    if result["failed"]:
        raise SystemExit(f"{result['failed']} answers to {method} {path} were not {expect}")
    return result["requests"], result["seconds"]


class Project:
    """The project under one sync gunicorn worker on a throwaway database, with what each layer's
    requests need: tokens, a decided request, and pending requests enough for every round."""

    def __init__(self, stack, seconds, rounds):
        redis_url = support.REDIS_URL if support.redis_answers(support.REDIS_URL) else ""
        database_url = stack.enter_context(support.ThrowawayPostgres(support.POSTGRES_URL))
        env = api_http.environment(database_url, redis_url, uuid.uuid4().hex[:8])
        self.keys, pending = api_http.prepare(env, CLIENTS, CLIENTS * seconds * rounds * 150)
        self.decided = _approve_one(pending.pop())
        # wrk's script deals the ids of its file out from the top: a file of its own per run.
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        share = len(pending) // rounds
        self.id_files = []
        for number in range(rounds):
            self.id_files.append(folder / f"pending-{number}.txt")
            self.id_files[-1].write_text("\n".join(pending[number * share : (number + 1) * share]))
        port = support.free_port()
        server = support.start_gunicorn(env, port, workers=1, threads=1, worker_class="sync")
        stack.callback(api_http.drop_queued_tasks)
        stack.callback(support.stop_gunicorn, server)
        self.base_url = f"http://127.0.0.1:{port}"
        self.workers = workers_of(server)
        self.seconds = seconds
        # Warm up: the first requests load code and the users' permissions.
        self.run(method="GET", path=f"/api/v1/approvals/{self.decided}/", expect=200, seconds=1)

    def run(self, seconds=None, **request):
        return run_script(self.base_url, self.keys, seconds or self.seconds, **request)

    def layers(self):
        """(label, run) for each layer, in order."""
        decided = f"/api/v1/approvals/{self.decided}/"
        return [
            (
                "liveness probe, no token",
                partial(self.run, method="GET", path="/healthz", expect=200, auth=False),
            ),
            ("GET a decided request", partial(self.run, method="GET", path=decided, expect=200)),
            (
                "approve it again (no change)",
                partial(self.run, method="POST", path=f"{decided}approve/", body="{}", expect=200),
            ),
            ("approve a pending request", self.approve),
        ]

    def approve(self):
        ids = self.id_files.pop()
        result = api_http.run_wrk(self.base_url, self.keys, self.seconds, "approve", ids)
        if result["repeated"]:
            raise SystemExit("every pending request was decided; run for fewer --seconds")
        return result["requests"], result["seconds"]


def _approve_one(approval_id):
    from django.contrib.auth.models import User
    from django.db import connections

    from backoffice.actors import Actor, Source
    from claims import services

    approver = Actor(source=Source.API, user=User.objects.get(username="bench-0"))
    services.decide(approval_id, "approve", actor=approver)
    connections.close_all()
    return approval_id


class Anchor:
    """The anchor's approve under one sync gunicorn worker, in the virtualenv and on a database
    of its own."""

    def __init__(self, stack, anchor_dir, seconds):
        if not (ANCHOR_VENV / "bin" / "gunicorn").exists():
            raise SystemExit(f"no anchor virtualenv at {ANCHOR_VENV}: run side_by_side.sh once")
        database_url = stack.enter_context(
            support.ThrowawayPostgres(support.POSTGRES_URL, prefix="anchor_bench")
        )
        self.env = {
            **os.environ,
            "ANCHOR_DB": database_url.rsplit("/", 1)[1],
            "ANCHOR_PG_PORT": "5432",
        }
        python = str(ANCHOR_VENV / "bin" / "python")
        subprocess.run(
            [python, "manage.py", "migrate", "--run-syncdb", "-v0"],
            cwd=anchor_dir,
            env=self.env,
            check=True,
        )
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute(
                "INSERT INTO claims_claim (id, state, version, updated_at) "
                "SELECT g, 'pending', 0, now() FROM generate_series(%s, %s) g",
                ANCHOR_IDS,
            )
        self.port = support.free_port()
        server = subprocess.Popen(
            [
                str(ANCHOR_VENV / "bin" / "gunicorn"),
                "wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
                "--log-level",
                "warning",
            ],
            cwd=anchor_dir,
            env=self.env,
            start_new_session=True,
        )
        stack.callback(support.stop_gunicorn, server)
        support.wait_for_port(server, self.port)
        self.workers = workers_of(server)
        self.anchor_dir, self.seconds, self.next_id = anchor_dir, seconds, ANCHOR_IDS[0]

    def approve(self):
        """One wrk run of the anchor's own script, from the first id no run has approved."""
        result = wrk(
            f"http://127.0.0.1:{self.port}",
            "approve.lua",
            self.seconds,
            env={**self.env, "ANCHOR_START": str(self.next_id), "ANCHOR_THREADS": str(CLIENTS)},
            cwd=self.anchor_dir,
        )
        if result["errors"]:
            raise SystemExit(f"the anchor answered {result['errors']} errors")
        # Each thread took every CLIENTS-th id; the slowest may have lagged a little behind.
        self.next_id += result["requests"] + CLIENTS * 100
        return result["requests"], result["seconds"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run (5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, one of each run (3)")
    parser.add_argument(
        "--anchor", type=Path, help="the bench-anchor directory, to measure it in each round"
    )
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    with contextlib.ExitStack() as stack:
        runs = []
        if options.anchor:
            anchor = Anchor(stack, options.anchor.resolve(), options.seconds)
            runs.append(("anchor: approve", anchor.workers, anchor.approve))
        project = Project(stack, options.seconds, options.rounds)
        runs += [(label, project.workers, run) for label, run in project.layers()]
        print(f"CPU per request, one sync gunicorn worker each, {CLIENTS} wrk clients")
        costs = {label: [] for label, _, _ in runs}
        for round_number in range(1, options.rounds + 1):
            print(f"round {round_number}")
            for label, workers, run in runs:
                cost = Cost.of(workers, run)
                costs[label].append(cost)
                print("  " + cost.line(label))
    print(f"median of {options.rounds} rounds")
    for label, measured in costs.items():
        print("  " + Cost.median(measured).line(label))
    if options.anchor:
        ratios = [
            anchor_cost.sum_ms / project_cost.sum_ms
            for anchor_cost, project_cost in zip(
                costs["anchor: approve"], costs["approve a pending request"], strict=True
            )
        ]
        print(
            "the anchor's CPU per approve over the project's, per round: "
            + ", ".join(f"{ratio:.2f}x" for ratio in ratios)
        )


if __name__ == "__main__":
    main()
