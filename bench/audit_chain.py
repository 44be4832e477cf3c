r"""The audit hash chain on PostgreSQL: what verifying and exporting a long chain costs, and what
the chain costs every audited approval.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/claimdesk .venv/bin/python bench/audit_chain.py

1. ``manage.py audit_verify`` over ``--events`` (1,000,000) events: seconds and peak memory
   (resident set of the process). The events are made by this script (the same HMAC chain the
   application writes, loaded with COPY) in a throwaway database, dropped afterwards.
2. ``manage.py audit_export --format ndjson`` of a growing part of them: the peak memory must stay
   flat as the count grows (the export streams).
3. Audited approvals per second before and after the chain: ``bench/approvals.py`` run from a
   copy of the code before the chain (``--before``, by default the commit before the one that
   added ``audit/chain.py``) and from this tree, alternately, ``--rounds`` times each, so both
   meet the same machine load. The target is at most a tenth slower.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from support import ROOT, ThrowawayPostgres

sys.path.insert(0, str(ROOT))

from audit import chain

KEY = "bench-audit-key-used-by-this-benchmark-only"  # pragma: allowlist secret
SLOWDOWN_TARGET = 0.10
START = datetime(2026, 1, 1, tzinfo=UTC)
COLUMNS = (*chain.FIELDS, "prev_hash", "hash")
QUERIES_LINE = re.compile(r"^Queries per approval: (\d+)", re.M)
APPROVALS_LINE = re.compile(
    r"^Approvals \(pending -> approved, audited\).*= *([\d.]+) ops/s.*CPU: ([\d.]+) ms each", re.M
)


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


def before_tree(revision: str, into: Path) -> Path:
    """The project as it was at ``revision``, unpacked into ``into``."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def first_chain_commit() -> str:
    added = subprocess.run(
        ["git", "log", "--diff-filter=A", "--format=%H", "--", "audit/chain.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not added:
        raise SystemExit("audit/chain.py is not in this branch's history; pass --before")
    return f"{added[-1]}^"


def approvals_run(tree: Path, env: dict[str, str], approvals: int) -> tuple[float, float, int]:
    """One run of ``tree``'s bench/approvals.py: approvals per second, the milliseconds of CPU
    its own process spent on each (which a busy machine changes less than the rate), and the
    statements each approval sends (which it does not change at all)."""
    args = [sys.executable, str(tree / "bench" / "approvals.py"), "--approvals", str(approvals)]
    out = run_measured([*args, "--pairs", "1"], env, cwd=tree).out
    rate, queries = APPROVALS_LINE.search(out), QUERIES_LINE.search(out)
    if not (rate and queries):
        raise SystemExit(f"no approvals figures in the output of {tree}/bench/approvals.py:\n{out}")
    return float(rate.group(1)), float(rate.group(2)), int(queries.group(1))


def bench_approvals(database_url: str, revision: str, approvals: int, rounds: int) -> None:
    """Runs alternate, before then after, so each pair meets the same load; the verdict is the
    median of the pairs' ratios."""
    env = environment(database_url)
    ratios: list[float] = []
    cpu: dict[str, list[float]] = {"before": [], "after": []}
    queries: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as scratch:
        trees = {"before": before_tree(revision, Path(scratch)), "after": ROOT}
        for round_number in range(1, rounds + 1):
            rates: dict[str, float] = {}
            for name, tree in trees.items():
                rates[name], milliseconds, queries[name] = approvals_run(tree, env, approvals)
                cpu[name].append(milliseconds)
                report(
                    f"Round {round_number}, {name} the chain: {rates[name]:.1f} approvals/s, "
                    f"{milliseconds:.2f} ms of CPU each"
                )
            ratios.append(rates["after"] / rates["before"])
    slowdown = 1 - statistics.median(ratios)
    verdict = "meets" if slowdown <= SLOWDOWN_TARGET else "MISSES"
    report(f"Before the chain: {revision}")
    report(
        f"Statements per approval: {queries['before']} before, {queries['after']} with the chain"
    )
    report(
        "Client CPU per approval, median: "
        f"{statistics.median(cpu['before']):.2f} ms before, "
        f"{statistics.median(cpu['after']):.2f} ms with the chain"
    )
    report(
        f"With the chain, median of {rounds} paired runs: {-slowdown:+.1%} approvals/s "
        f"({verdict} the target: at most {SLOWDOWN_TARGET:.0%} slower)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="chain length (1,000,000)")
    parser.add_argument("--approvals", type=int, default=2000, help="approvals a run (2000)")
    parser.add_argument("--rounds", type=int, default=3, help="runs before and after each (3)")
    parser.add_argument("--before", help="revision of the code before the chain")
    parser.add_argument("--skip-approvals", action="store_true")
    parser.add_argument("--skip-verify", action="store_true")
    options = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")):
        print("Set DATABASE_URL=postgres://... (a server this script may create databases on).")
        return 2
    if options.events < 10 or options.approvals < 3 or options.rounds < 1:
        parser.error("--events must be at least 10, --approvals 3 and --rounds 1")
    server_url = urlunsplit(urlsplit(database_url)._replace(path="/postgres"))
    if not options.skip_verify:
        bench_verify_and_export(server_url, options.events)
    if not options.skip_approvals:
        revision = options.before or first_chain_commit()
        bench_approvals(database_url, revision, options.approvals, options.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
