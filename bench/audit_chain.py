r"""The audit hash chain on PostgreSQL: what verifying and exporting a long chain costs, and what
the chain costs every audited approval.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/claimdesk .venv/bin/python bench/audit_chain.py

1. ``manage.py audit_verify`` over ``--events`` (1,000,000) events: seconds and peak memory
   (resident set of the process). The events are made by this script (the same HMAC chain the
   application writes, loaded with COPY) in a throwaway database, dropped afterwards.
2. ``manage.py audit_export --format ndjson`` of a growing part of them: the peak memory must stay
   flat as the count grows (the export streams).
3. What the chain costs an audited approval: ``services.decide(..., "approve")`` timed as
   ``bench/approvals.py`` times it (one client, one connection, a throwaway database), with the
   chain as ``audit.services.append`` writes it and without it. "Without" is this same tree with
   ``append`` swapped, here in the benchmark only, for ``append_without_chain``: the append as it
   was before the chain, a plain INSERT of the event (no head row update, no HMAC; the trigger
   that moves the head's hash is disabled meanwhile). Each of ``--rounds`` rounds makes
   ``--approvals`` approvals of each kind, in this one process, in blocks of ``--block`` that take
   turns (with, without, without, with, ...): on a shared machine the load changes from second to
   second, and short turns let both kinds meet the same load. Each round prints both rates, this
   process's CPU milliseconds per approval and the slowdown; the verdict is the median of the
   rounds' slowdowns. The target is at most a tenth slower.

``--skip-verify`` runs part 3 alone, ``--skip-approvals`` parts 1 and 2 alone.
"""

import argparse
import contextlib
import functools
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from support import ROOT, ThrowawayPostgres, postgresql_database

sys.path.insert(0, str(ROOT))

from audit import chain

KEY = "bench-audit-key-used-by-this-benchmark-only"  # pragma: allowlist secret
SLOWDOWN_TARGET = 0.10
START = datetime(2026, 1, 1, tzinfo=UTC)
COLUMNS = (*chain.FIELDS, "prev_hash", "hash")
# Sequence numbers of the events appended without the chain: below the chain's, never in its way.
UNCHAINED = itertools.count(-1, -1)


def environment(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DEBUG": "1",
        "ENV_FILE": "",
        "DATABASE_URL": database_url,
        "AUDIT_HMAC_KEY": KEY,
        "AUDIT_CHECKPOINT_FILE": "",
        "LOG_LEVEL": "WARNING",
    }


@dataclass
class Measured:
    """A finished process: wall and CPU seconds (its own, so a busy machine shows as the gap),
    peak resident memory in MiB, and its stdout."""

    seconds: float
    cpu_seconds: float
    peak_mib: int
    out: str

    def figures(self) -> str:
        return (
            f"{self.seconds:6.1f} s ({self.cpu_seconds:.1f} s of CPU), "
            f"peak memory {self.peak_mib} MiB"
        )


def run_measured(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> Measured:
    """Run a process to its end and measure it."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=err)
        # wait4, not wait: the child's own peak memory, not the largest of all children so far.
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            err.seek(0)
            errors = err.read().decode()[-2000:]
            raise SystemExit(f"{' '.join(args)} failed ({process.returncode}): {errors}")
        out.seek(0)
        cpu = usage.ru_utime + usage.ru_stime
        return Measured(seconds, cpu, usage.ru_maxrss // 1024, out.read().decode())


def manage(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), *args]


def moment(seq: int) -> str:
    """Event ``seq``'s time: one millisecond apart, so the first N events end before N+1's."""
    return (START + timedelta(milliseconds=seq)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def load_chain(database_url: str, count: int) -> None:
    """``count`` chained events straight into the table (the head's trigger off meanwhile)."""
    key, prev_hash = KEY.encode(), chain.GENESIS
    with psycopg.connect(database_url) as conn, conn.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_advance_head")
        with cursor.copy(f"COPY audit_auditevent ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for seq in range(1, count + 1):
                link = {
                    "seq": seq,
                    "timestamp": moment(seq),
                    "actor_id": seq % 50 or None,
                    "actor_label": f"agent-{seq % 50}",
                    "action": "approval.approved",
                    "source": "api",
                    "object_type": "claims.approvalrequest",
                    "object_id": f"{seq:032x}",
                    "trace_id": f"{seq * 7919:032x}",
                    "details": {"decision": "approve", "note": "", "n": seq},
                }
                link["prev_hash"] = prev_hash
                link["hash"] = prev_hash = chain.link_hash(key, prev_hash, link)
                link["details"] = json.dumps(link["details"])
                copy.write_row([link[column] for column in COLUMNS])
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_advance_head")
        cursor.execute("UPDATE audit_chainhead SET seq = %s, hash = %s", (count, prev_hash))
        cursor.execute("ANALYZE audit_auditevent")


def report(line: str) -> None:
    """Print a figure as soon as it is known, so a run cut short keeps what it measured."""
    print(line, flush=True)


def bench_verify_and_export(server_url: str, count: int) -> None:
    with ThrowawayPostgres(server_url, prefix="claimdesk_audit_bench") as url:
        env = environment(url)
        subprocess.run(manage("migrate", "--verbosity", "0"), env=env, check=True, cwd=ROOT)
        started = time.perf_counter()
        load_chain(url, count)
        report(f"Loaded {count} chained events in {time.perf_counter() - started:.1f} s")
        verifying = run_measured(manage("audit_verify"), env)
        verified = json.loads(verifying.out)
        assert verified["ok"] and verified["checked"] == count, verified
        report(f"audit_verify over {count} events: {verifying.figures()}")
        for part in sorted({count // 10, count * 3 // 10, count}):
            until = moment(part + 1)
            args = manage("audit_export", "--until", until, "--output", os.devnull)
            report(f"audit_export of {part:>9} events: {run_measured(args, env).figures()}")


def django_on(database_url: str) -> Any:
    """Django set up in this process as ``bench/approvals.py`` runs it (it sets Django up when
    imported), on ``database_url``'s server; returns that module, for its helpers."""
    os.environ.update(environment(database_url))
    import approvals

    return approvals


def append_without_chain(event: Any) -> None:
    """``audit.services.append`` as it was before the chain: a plain INSERT of the event, with no
    head row update and no HMAC. ``seq`` has been required and unique since the chain came, so
    these rows count down from -1."""
    event.seq = next(UNCHAINED)
    event.save(force_insert=True)


@contextlib.contextmanager
def without_the_chain() -> Iterator[None]:
    """Audit events appended by ``append_without_chain``, and the trigger that moves the head's
    hash on every insert disabled, as before the chain; both put back afterwards."""
    from django.db import connection

    from audit import services

    linked = services.append
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_advance_head")
    services.append = append_without_chain
    try:
        yield
    finally:
        services.append = linked
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_advance_head")


VARIANTS: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
    "with": contextlib.nullcontext,
    "without": without_the_chain,
}


@dataclass
class Run:
    """One variant's approvals in one round: how many, the seconds they took and the CPU seconds
    this process spent on them (which a busy machine changes less than the rate)."""

    approvals: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.approvals / self.seconds

    @property
    def cpu_ms(self) -> float:
        return self.cpu_seconds * 1000 / self.approvals

    def figures(self) -> str:
        return f"{self.rate:6.1f} approvals/s, {self.cpu_ms:.2f} ms of CPU each"


def approve(approvals: Any, actor: Any, ids: list[Any], run: Run) -> None:
    """Approve the requests ``ids``, adding their time to ``run``."""
    from claims import services

    timing = approvals.Timing(len(ids), lambda i: services.decide(ids[i], "approve", actor=actor))
    run.approvals += len(ids)
    run.seconds += timing.seconds
    run.cpu_seconds += timing.cpu_seconds


def paired_round(approvals: Any, actor: Any, count: int, block: int) -> dict[str, Run]:
    """``count`` approvals with the chain and ``count`` without, in blocks of ``block`` that take
    turns (with, without, without, with, ...), so that both meet the machine's load as it
    changes from second to second."""
    pending = {variant: approvals.pending_requests(count) for variant in VARIANTS}
    runs = {variant: Run() for variant in VARIANTS}
    for number, start in enumerate(range(0, count, block)):
        order = list(VARIANTS) if number % 2 == 0 else list(reversed(VARIANTS))
        for variant in order:
            with VARIANTS[variant]():
                approve(approvals, actor, pending[variant][start : start + block], runs[variant])
    return runs


def check_the_chain(chained: int, unchained: int) -> None:
    """The runs with the chain made one valid chain; the others appended beside it."""
    from audit.models import AuditEvent
    from audit.selectors import links

    walk = chain.Walk(KEY.encode()).walk(links(AuditEvent.objects.filter(seq__gt=0)))
    assert walk.broken is None and walk.checked == chained, (walk.broken, walk.checked, chained)
    assert AuditEvent.objects.filter(seq__lt=0).count() == unchained


def slower(slowdown: float) -> str:
    return f"{slowdown:.1%} slower" if slowdown >= 0 else f"{-slowdown:.1%} faster"


def bench_approvals(database_url: str, count: int, rounds: int, block: int) -> None:
    """The verdict is the median of the rounds' slowdowns."""
    approvals = django_on(database_url)
    from claims import services

    runs: dict[str, list[Run]] = {name: [] for name in VARIANTS}
    statements: dict[str, int] = {}
    with postgresql_database("audit-chain-bench") as name:
        if name is None:
            raise SystemExit(2)
        actor = approvals.approver_actor()
        for variant, swapped in VARIANTS.items():
            with swapped():
                # The first decision also loads the approver's permissions; count the second's.
                first, second = approvals.pending_requests(2)
                services.decide(first, "approve", actor=actor)
                statements[variant] = approvals.queries_per_call(
                    functools.partial(services.decide, second, "approve", actor=actor)
                )
        for number in range(1, rounds + 1):
            paired = paired_round(approvals, actor, count, block)
            for variant, run in paired.items():
                runs[variant].append(run)
            with_chain, without = paired["with"], paired["without"]
            report(
                f"Round {number}: with the chain {with_chain.figures()}; "
                f"without {without.figures()}; {slower(1 - with_chain.rate / without.rate)}"
            )
        check_the_chain(2 + rounds * count, 2 + rounds * count)
    slowdowns = [1 - w.rate / wo.rate for w, wo in zip(runs["with"], runs["without"], strict=True)]
    extra_cpu = [w.cpu_ms - wo.cpu_ms for w, wo in zip(runs["with"], runs["without"], strict=True)]
    slowdown = statistics.median(slowdowns)
    verdict = "meets" if slowdown <= SLOWDOWN_TARGET else "MISSES"
    report(
        f"Statements per approval: {statements['with']} with the chain, "
        f"{statements['without']} without"
    )
    for variant in VARIANTS:
        rate = statistics.median(run.rate for run in runs[variant])
        cpu_ms = statistics.median(run.cpu_ms for run in runs[variant])
        report(
            f"Median of {rounds} rounds, {variant} the chain: {rate:.1f} approvals/s, "
            f"{cpu_ms:.2f} ms of CPU each"
        )
    report(
        f"With the chain, median of {rounds} paired rounds: {slower(slowdown)}, "
        f"{statistics.median(extra_cpu):+.2f} ms of CPU per approval "
        f"({verdict} the target: at most {SLOWDOWN_TARGET:.0%} slower)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="chain length (1,000,000)")
    parser.add_argument(
        "--approvals", type=int, default=1000, help="approvals a round, of each variant (1000)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds (5)")
    parser.add_argument(
        "--block", type=int, default=50, help="approvals in a row of one variant (50)"
    )
    parser.add_argument("--skip-approvals", action="store_true")
    parser.add_argument("--skip-verify", action="store_true")
    options = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")):
        print("Set DATABASE_URL=postgres://... (a server this script may create databases on).")
        return 2
    if options.events < 10 or options.approvals < 3 or options.rounds < 1 or options.block < 1:
        parser.error("--events must be at least 10, --approvals 3, --rounds and --block 1")
    server_url = urlunsplit(urlsplit(database_url)._replace(path="/postgres"))
    if not options.skip_verify:
        bench_verify_and_export(server_url, options.events)
    if not options.skip_approvals:
        bench_approvals(database_url, options.approvals, options.rounds, options.block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
