"""``manage.py drill``: a drill runs end to end against the fake Bot API; it refuses production."""

import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def drill(*args, tmp_path, **env):
    environment = {**os.environ, "VAR_DIR": str(tmp_path), "DEBUG": "1", **env}
    environment.pop("DATABASE_URL", None)
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

    assert len(runbooks) == 6
    assert all((PROJECT / runbook).is_file() for runbook in runbooks), runbooks


def test_drills_refuse_to_run_with_debug_off(tmp_path):
    result = drill("--all", tmp_path=tmp_path, DEBUG="0")

    assert result.returncode == 2
    assert "never on production" in result.stderr


def test_an_unknown_drill_is_named(tmp_path):
    result = drill("fire-drill", tmp_path=tmp_path)

    assert result.returncode == 2
    assert "unknown: fire-drill" in result.stderr
