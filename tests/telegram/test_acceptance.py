"""``manage.py acceptance`` passes on a fresh database, with the ORM broker and with Redis."""

import os
import subprocess
import sys

from django.conf import settings

from .worker import MANAGE_PY

STEPS = [
    "database migrated",
    "Telegram message with buttons arrived",
    "approver pressed Approve",
    "request approved in the database",
    "Telegram message edited to show the decision",
    "request archived",
    "job run (dry) and its request executed",
]


def run_acceptance(tmp_path, *, timeout=60, **env):
    environment = {
        **os.environ,
        "VAR_DIR": str(tmp_path),
        "Q_CLUSTER_NAME": f"{settings.Q_CLUSTER['name']}-acceptance",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    environment.pop("DATABASE_URL", None)
    if "REDIS_URL" not in env:
        environment.pop("REDIS_URL", None)
    return subprocess.run(
        [sys.executable, str(MANAGE_PY), "acceptance", "--timeout", str(timeout)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=settings.BASE_DIR,
        stdin=subprocess.DEVNULL,
    )


def assert_passed(result):
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for step in STEPS:
        assert f"✓ {step}" in result.stdout, output
    assert "Acceptance passed" in result.stdout


def test_acceptance_passes_on_a_fresh_database_with_the_orm_broker(tmp_path):
    assert_passed(run_acceptance(tmp_path))


def test_acceptance_passes_with_the_redis_broker(tmp_path, test_redis):
    result = run_acceptance(tmp_path, REDIS_URL=test_redis.url, CACHE_KEY_PREFIX=test_redis.prefix)

    assert_passed(result)
    # The run's rate limiter keeps its keys under its own queue's name, not the production prefix.
    assert not list(test_redis.client.scan_iter(f"{settings.TELEGRAM_RATE_REDIS_PREFIX}:*"))


def test_acceptance_fails_clearly_when_a_step_times_out(tmp_path):
    result = run_acceptance(tmp_path, timeout=0.01)

    assert result.returncode == 1
    assert "✗ worker and poller started" in result.stdout
    assert "Acceptance failed: timed out after" in result.stderr
