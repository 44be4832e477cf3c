"""Readiness checks: can this process serve, and is the rest of the product there to help it?

Each check returns nothing when healthy and raises with the reason when not; ``run`` times every
check and reports them all, so a failing /readyz names what failed. A liveness probe (/healthz)
runs none of them: a process whose database is down is still alive, and restarting it would not
bring the database back.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django_q.brokers import get_broker

from backoffice.redaction import redact

from . import heartbeat

Check = Callable[[], None]


class NotReady(Exception):
    """A check found something wrong; the message says what."""


def database() -> None:
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT 1")


def broker() -> None:
    """The queue broker answers and can count its queue (the ORM broker: a query on it)."""
    queue = get_broker()
    if queue.ping() is False:
        raise NotReady(f"{queue.info()} does not answer")
    queue.queue_size()


def worker_heartbeat() -> None:
    age = heartbeat.age()
    limit = settings.WORKER_HEARTBEAT_MAX_AGE
    if age is None:
        raise NotReady("no worker has ever written a heartbeat")
    if age > limit:
        raise NotReady(f"the last worker heartbeat was {int(age)} s ago (limit {limit} s)")


_migrated = False


def migrations() -> None:
    """Every migration is applied; once it was so, this process does not look again (a deploy
    migrates before it starts new processes, and planning costs tens of milliseconds)."""
    global _migrated
    if _migrated:
        return
    connection = connections[DEFAULT_DB_ALIAS]
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        names = ", ".join(f"{migration.app_label}.{migration.name}" for migration, _ in plan[:5])
        raise NotReady(f"{len(plan)} migrations not applied: {names}")
    _migrated = True


READINESS: dict[str, Check] = {
    "database": database,
    "broker": broker,
    "worker_heartbeat": worker_heartbeat,
    "migrations": migrations,
}


@dataclass(frozen=True)
class Result:
    healthy: bool
    checks: dict[str, dict[str, Any]]


def run(checks: dict[str, Check]) -> Result:
    """Run every check, each timed; one that raises anything fails with its redacted reason."""
    results: dict[str, dict[str, Any]] = {}
    for name, check in checks.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as error:
            reason = (
                str(error) if isinstance(error, NotReady) else f"{type(error).__name__}: {error}"
            )
            results[name] = {"status": "fail", "error": redact(reason)}
        else:
            results[name] = {"status": "ok"}
        results[name]["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return Result(all(r["status"] == "ok" for r in results.values()), results)
