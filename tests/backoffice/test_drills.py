"""``manage.py drill``: a drill runs end to end against the fake Bot API; it refuses production."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from backoffice.drills.database import database_url

PROJECT = Path(__file__).resolve().parents[2]


def drill(*args, tmp_path, **env):
    environment = {**os.environ, "VAR_DIR": str(tmp_path), "DEBUG": "1"}
    environment.pop("DATABASE_URL", None)
    environment.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", "drill", *args],
        cwd=PROJECT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_drill_reproduces_the_condition_recovers_and_reports(tmp_path):
    result = drill("dead-letters", tmp_path=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "✓ all 5 messages sent, each exactly once" in result.stdout
    assert "passed in" in result.stdout


def test_every_drill_names_an_existing_runbook(tmp_path):
    result = drill("--list", tmp_path=tmp_path)
    runbooks = [line.split()[1] for line in result.stdout.splitlines() if line[:1].strip()]

    assert len(runbooks) == 7
    assert all((PROJECT / runbook).is_file() for runbook in runbooks), runbooks


def assert_poison_updates_quarantined_and_good_ones_answered_once(result):
    assert result.returncode == 0, result.stdout + result.stderr
    assert "none sent again" in result.stdout
    assert "the offset moved past all 5 and Telegram holds none" in result.stdout
    assert "✓ all 6 good updates handled, each answered exactly once" in result.stdout
    assert "the 4 poison updates, each with its reason" in result.stdout
    assert "stay quarantined" in result.stdout


def test_a_poison_update_between_good_ones_is_quarantined_and_blocks_nothing(tmp_path):
    result = drill("poison-update", tmp_path=tmp_path)

    assert_poison_updates_quarantined_and_good_ones_answered_once(result)


@pytest.fixture
def scratch_database(db):
    """A PostgreSQL database of the drill's own beside the test database, dropped after."""
    name = f"{connection.settings_dict['NAME']}_drill_{secrets.token_hex(4)}"
    with psycopg.connect(database_url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield database_url(name)
    with psycopg.connect(database_url("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
def test_on_postgresql_a_lone_surrogate_is_quarantined_not_refused(tmp_path, scratch_database):
    # PostgreSQL refuses a lone surrogate in jsonb; SQLite keeps it, so this is the case that
    # once made the webhook answer 500.
    result = drill("poison-update", tmp_path=tmp_path, DATABASE_URL=scratch_database)

    assert_poison_updates_quarantined_and_good_ones_answered_once(result)


def test_drills_refuse_to_run_with_debug_off(tmp_path):
    result = drill("--all", tmp_path=tmp_path, DEBUG="0")

    assert result.returncode == 2
    assert "never on production" in result.stderr


def test_an_unknown_drill_is_named(tmp_path):
    result = drill("fire-drill", tmp_path=tmp_path)

    assert result.returncode == 2
    assert "unknown: fire-drill" in result.stderr
