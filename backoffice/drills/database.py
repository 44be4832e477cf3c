"""Drill of the database side: restore last night's backup into a scratch database."""

import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

from django.apps import apps
from django.conf import settings
from django.db import connection

from .base import MANAGE_PY, DrillRun, drill

DEPLOY = Path(settings.BASE_DIR) / "deploy"
COUNTED = (
    "claims.Claim",
    "claims.ApprovalRequest",
    "audit.AuditEvent",
    "telegram_bridge.OutboundMessage",
    "telegram_bridge.InboundUpdate",
    "auth.User",
)


def database_url(name: str) -> str:
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}{port}/{name}"


def counts(cursor) -> dict[str, int]:
    found = {}
    for label in COUNTED:
        table = connection.ops.quote_name(apps.get_model(label)._meta.db_table)
        cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 (a model's own table)
        found[label] = cursor.fetchone()[0]
    return found


def run_script(*args: str, env: dict[str, str] | None = None) -> str:
    # A fixed command line: a script of this project's deploy/ directory.
    result = subprocess.run(  # noqa: S603
        [str(DEPLOY / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    if result.returncode != 0:
        raise RuntimeError(f"deploy/{args[0]} failed: {result.stderr.strip()}")
    return result.stdout


def verify_audit_chain(url: str) -> dict:
    """``manage.py audit_verify`` on the database at ``url``: its JSON report."""
    # A fixed command line: this interpreter, this project's manage.py.
    result = subprocess.run(  # noqa: S603
        [sys.executable, str(MANAGE_PY), "audit_verify"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "DATABASE_URL": url},
    )
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        return {"ok": False, "stderr": result.stderr.strip()[-2000:]}


@drill(
    "database-restore",
    "docs/runbooks/database-restore.md",
    "deploy/backup dumps the database, deploy/restore loads it into a scratch database, every "
    "table holds as many rows as the original, and the restored audit chain verifies.",
)
def database_restore(run: DrillRun) -> None:
    import psycopg

    if connection.vendor != "postgresql":
        run.step("skipped: backups are PostgreSQL dumps; set DATABASE_URL to a PostgreSQL database")
        return
    run.enqueue(3, "backed-up")
    with connection.cursor() as cursor:
        before = counts(cursor)
    live = database_url(connection.settings_dict["NAME"])
    with tempfile.TemporaryDirectory() as backups:
        dump = run_script("backup", backups, env={**os.environ, "DATABASE_URL": live}).strip()
        run.step(f"deploy/backup wrote {Path(dump).name}")
        scratch = f"{connection.settings_dict['NAME']}_restore_{secrets.token_hex(4)}"
        admin = database_url("postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{scratch}"')
        try:
            run_script("restore", dump, database_url(scratch))
            run.step(f"deploy/restore loaded it into the scratch database {scratch}")
            with psycopg.connect(database_url(scratch)) as conn, conn.cursor() as cursor:
                after = counts(cursor)
            audit_report = verify_audit_chain(database_url(scratch))
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
    run.check(after == before, f"row counts differ: live {before}, restored {after}")
    run.step("row counts match: " + ", ".join(f"{k.split('.')[1]} {v}" for k, v in before.items()))
    run.check(audit_report.get("ok"), f"the restored audit chain is broken: {audit_report}")
    run.step(
        f"manage.py audit_verify on the restored database: {audit_report['checked']} events, "
        f"{audit_report['checkpoints_checked']} checkpoint(s), the chain holds"
    )
